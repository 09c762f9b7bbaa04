import Foundation
import Simulation

/// `make simulate [SCENARIO=punch|connection] [SEED=N] [RUNS=N] [FIRST=N] [PARTY=N]`: runs the
/// seeded punch scenarios FIRST…FIRST+RUNS−1 (default 0…9,999) and prints, per cell, how many went
/// direct, in which round and how fast, how many detections were off, then every run that broke a
/// property and how to replay it. With PARTY, parties of that many members instead (RUNS default
/// 20). With SCENARIO=connection, the connection scenarios (RUNS default 5,000): the peer chart
/// and connection of both members over WireGuard's model. With SEED, runs that one scenario and
/// prints its whole trace. SCENARIO=connection with PARTY: parties of that many members with
/// full connections to one another, a fault mixed in (RUNS default 20).
let environment = ProcessInfo.processInfo.environment

/// The variable's number, `fallback` when unset or empty; a clear error and exit 64 when it is not one.
func number(_ name: String, fallback: UInt64?) -> UInt64? {
    guard let text = environment[name], !text.isEmpty else { return fallback }
    guard let value = UInt64(text) else {
        FileHandle.standardError.write(Data("simulate: \(name) must be a whole number, not '\(text)'\n".utf8))
        exit(64)
    }
    return value
}

/// Prints a replayed run's trace, its summary and its broken properties; exits 1 if any broke.
func replay(trace: [String], summary: String, violations: [String]) -> Never {
    for line in trace { print(line) }
    print(summary)
    print(violations.isEmpty ? "properties: all hold" : "properties broken:\n  \(violations.joined(separator: "\n  "))")
    exit(violations.isEmpty ? 0 : 1)
}

if environment["SWIFT_DETERMINISTIC_HASHING"] == nil {
    FileHandle.standardError.write(Data("simulate: SWIFT_DETERMINISTIC_HASHING is not set: the control core iterates its tables in hash order, so a seed may not replay exactly (make simulate sets it)\n".utf8))
}

let seed = number("SEED", fallback: nil)
let first = number("FIRST", fallback: 0)!
let party = number("PARTY", fallback: nil).map { Int(clamping: $0) }
if let party, party < 2 {
    FileHandle.standardError.write(Data("simulate: PARTY must be 2 or more, not \(party)\n".utf8))
    exit(64)
}
/// Runs parties FIRST…FIRST+RUNS−1 (RUNS default 20) of `size` members, or replays SEED; prints each
/// summary, the seeds that broke a property and how to replay the first three; exits 1 if any broke.
func runParties(_ name: String, size: Int, replaying make: String,
                _ run: (UInt64, Bool) -> (summary: String, violations: [String], trace: [String])) -> Never {
    if let seed {
        let outcome = run(seed, true)
        replay(trace: outcome.trace, summary: outcome.summary, violations: outcome.violations)
    }
    let runs = number("RUNS", fallback: 20)!
    var failed: [(seed: UInt64, summary: String, violations: [String])] = []
    let started = ContinuousClock.now
    for seed in first..<first + runs {
        let outcome = run(seed, false)
        print(outcome.summary)
        if !outcome.violations.isEmpty { failed.append((seed, outcome.summary, outcome.violations)) }
    }
    print("\(runs) \(name) of \(size) in \(ContinuousClock.now - started); \(failed.count) broke a property"
          + (failed.isEmpty ? "" : ": seeds \(failed.map { "\($0.seed)" }.joined(separator: ", "))"))
    for outcome in failed.prefix(3) {
        print("\n--- \(outcome.summary)\n    broke: \(outcome.violations.prefix(5).joined(separator: "; "))\n    replay: make simulate \(make) SEED=\(outcome.seed)")
    }
    exit(failed.isEmpty ? 0 : 1)
}

if environment["SCENARIO"] == "connection", let size = party {
    runParties("connection parties", size: size, replaying: "SCENARIO=connection PARTY=\(size)") { seed, verbose in
        let outcome = ConnectionParty.drawn(seed: seed, size: size).run(verbose: verbose)
        return (outcome.summary, outcome.violations, outcome.trace)
    }
}
if environment["SCENARIO"] == "connection" {
    if let seed {
        let outcome = ConnectionScenario.drawn(seed: seed).run(verbose: true)
        replay(trace: outcome.trace, summary: outcome.summary, violations: outcome.violations)
    }
    let report = ConnectionReport.run(seeds: first..<first + number("RUNS", fallback: 5_000)!)
    print(report.table)
    if !report.actionsNeverExecuted.isEmpty { print("actions never executed: \(report.actionsNeverExecuted)") }
    for failure in report.failures.prefix(5) {
        print("\n--- \(failure.summary)\n    broke: \(failure.violations.joined(separator: "; "))\n    replay: make simulate SCENARIO=connection SEED=\(failure.scenario.seed)")
    }
    exit(report.failures.isEmpty ? 0 : 1)
} else if let scenario = environment["SCENARIO"], !scenario.isEmpty, scenario != "punch" {
    FileHandle.standardError.write(Data("simulate: SCENARIO must be punch or connection, not '\(scenario)'\n".utf8))
    exit(64)
}
if let size = party {
    runParties("parties", size: size, replaying: "PARTY=\(size)") { seed, verbose in
        let outcome = PartyScenario.drawn(seed: seed, size: size).run(verbose: verbose)
        return (outcome.summary, outcome.violations, outcome.trace)
    }
}
if let seed {
    let outcome = PunchScenario.drawn(seed: seed).run(verbose: true)
    replay(trace: outcome.trace, summary: outcome.summary, violations: outcome.violations)
}
let report = SimulationReport.run(seeds: first..<first + number("RUNS", fallback: 10_000)!)
print(report.table)
for failure in report.failures.prefix(5) {
    print("\n--- \(failure.summary)\n    broke: \(failure.violations.joined(separator: "; "))\n    replay: make simulate SEED=\(failure.scenario.seed)")
}
exit(report.failures.isEmpty ? 0 : 1)
