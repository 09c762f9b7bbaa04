import Simulation
import STUN
import Testing

/// Both members' peer charts and connections over the WireGuard model (see `ConnectionScenario`).
@Suite struct ConnectionSimulationTests {
    /// Every cell without port prediction, loss, jitter, duplication, traffic or none, a router
    /// flushed now and then: every seeded run keeps every property of `ConnectionOutcome.violations`,
    /// and the runs together execute every action of the chart (`make simulate SCENARIO=connection`
    /// runs more).
    @Test func seededScenariosKeepEveryProperty() {
        let report = ConnectionReport.run(seeds: 0..<Self.runs)
        print(report.table)
        #expect(report.failures.isEmpty, "\(report.failures.prefix(3).map { "\($0.summary): \($0.violations) — make simulate SCENARIO=connection SEED=\($0.scenario.seed)" })")
        #expect(report.cells.count == ConnectionScenario.cells.count)
        #expect(report.actionsNeverExecuted.isEmpty, "never executed: \(report.actionsNeverExecuted)")
    }

    static let runs: UInt64 = 5000

    /// Parties of 20 whose members all connect to one another (a carrier-grade NAT or a shared
    /// house now and then), a router flush, relay restart or control restart mixed in: every pair
    /// keeps every property, and nothing is left held when they leave
    /// (`make simulate SCENARIO=connection PARTY=20` runs more).
    @Test func partiesOfTwentyKeepEveryPairsProperties() {
        var faults: Set<String> = []
        for seed in Self.parties {
            let outcome = ConnectionParty.drawn(seed: seed).run()
            print(outcome.summary)
            switch outcome.scenario.fault?.fault {
            case .flush?: faults.insert("flush")
            case .relayRestart?: faults.insert("relay restart")
            case .controlRestart?: faults.insert("control restart")
            case .addressChange?: faults.insert("address change")
            case nil: faults.insert("none")
            }
            #expect(outcome.pairs.count == 190)
            #expect(outcome.violations.isEmpty,
                    "\(outcome.summary): \(outcome.violations.prefix(3)) — make simulate SCENARIO=connection PARTY=20 SEED=\(seed)")
        }
        #expect(faults.count == 5, "every kind of fault, and none: \(faults)")
    }

    /// Seeds of a party without a fault and of one with each kind of fault.
    static let parties: [UInt64] = [0, 2, 4, 5, 7]

    /// A seed replays exactly: the same trace, transition for transition.
    @Test func aSeedReplaysExactly() {
        let scenario = ConnectionScenario.drawn(seed: 11)
        let first = scenario.run(), again = scenario.run()
        #expect(first.trace == again.trace && first.transitions == again.transitions && !first.trace.isEmpty)
        #expect(ConnectionScenario.drawn(seed: 12).run().trace != first.trace)
    }

    /// On a clean network with traffic, every cell settles on its path within 15 s.
    @Test(arguments: ConnectionScenario.cells)
    func cleanCellsSettleQuickly(_ cell: [NATType]) {
        let outcome = ConnectionScenario(seed: 3, sites: cell, conditions: .clean, traffic: .seconds(1)).run()
        #expect(outcome.violations.isEmpty, "\(outcome.summary): \(outcome.violations)")
        #expect((outcome.converged ?? .max) < 15_000_000_000, "\(outcome.summary)")
    }
}
