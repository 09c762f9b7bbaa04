import Foundation
import Simulation

/// `make simulate [SEED=N] [RUNS=N] [FIRST=N]`: runs the seeded punch scenarios FIRST…FIRST+RUNS−1
/// (default 0…9,999) and prints, per cell, how many went direct, in which round and how fast, how
/// many detections were off, then every run that broke a property with its trace. With SEED, runs
/// that one scenario and prints its whole trace.
let environment = ProcessInfo.processInfo.environment
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
