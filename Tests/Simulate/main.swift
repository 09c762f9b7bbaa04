import Foundation
import Simulation

/// `make simulate [SEED=N] [RUNS=N] [FIRST=N]`: runs the seeded punch scenarios FIRST…FIRST+RUNS−1
/// (default 0…9,999) and prints, per cell, how many went direct, in which round and how fast, how
/// many detections were off, then every run that broke a property with its trace. With SEED, runs
/// that one scenario and prints its whole trace.
let environment = ProcessInfo.processInfo.environment
if let size = environment["PARTY"].flatMap({ Int($0) }), size >= 2 {
    // Parties: every pair of `size` members punching at once.
    if let text = environment["SEED"], !text.isEmpty {
        guard let seed = UInt64(text) else { fatalError("SEED must be a number, not \(text)") }
        let outcome = PartyScenario.drawn(seed: seed, size: size).run(verbose: true)
        for line in outcome.trace { print(line) }
        print(outcome.summary)
        let violations = outcome.violations
        print(violations.isEmpty ? "properties: all hold" : "properties broken:\n  \(violations.joined(separator: "\n  "))")
        exit(violations.isEmpty ? 0 : 1)
    }
    let runs = environment["RUNS"].flatMap { UInt64($0) } ?? 20
    let first = environment["FIRST"].flatMap { UInt64($0) } ?? 0
    var failed: [PartyOutcome] = []
    let started = ContinuousClock.now
    for seed in first..<first + runs {
        let outcome = PartyScenario.drawn(seed: seed, size: size).run()
        print(outcome.summary)
        if !outcome.violations.isEmpty { failed.append(outcome) }
    }
    print("\(runs) parties of \(size) in \(ContinuousClock.now - started); \(failed.count) broke a property")
    for outcome in failed.prefix(3) {
        print("\n--- \(outcome.summary)\n    broke: \(outcome.violations.prefix(5).joined(separator: "; "))\n    replay: make simulate PARTY=\(size) SEED=\(outcome.scenario.seed)")
    }
    exit(failed.isEmpty ? 0 : 1)
}
if let text = environment["SEED"], !text.isEmpty {
    guard let seed = UInt64(text) else { fatalError("SEED must be a number, not \(text)") }
    let outcome = PunchScenario.drawn(seed: seed).run(verbose: true)
    for line in outcome.trace { print(line) }
    print(outcome.summary)
    let violations = outcome.violations
    print(violations.isEmpty ? "properties: all hold" : "properties broken: \(violations.joined(separator: "; "))")
    exit(violations.isEmpty ? 0 : 1)
}
let runs = environment["RUNS"].flatMap { UInt64($0) } ?? 10_000
let first = environment["FIRST"].flatMap { UInt64($0) } ?? 0
let report = SimulationReport.run(seeds: first..<first + runs)
print(report.table)
for failure in report.failures.prefix(5) {
    print("\n--- \(failure.summary)\n    broke: \(failure.violations.joined(separator: "; "))\n    replay: make simulate SEED=\(failure.scenario.seed)")
}
exit(report.failures.isEmpty ? 0 : 1)
