import Net
import Punch
import Simulation
import STUN
import Testing

/// The agent's NAT detector and punch driver on the simulated network (see `PunchScenario`).
@Suite struct PunchSimulationTests {
    /// Every cell of the matrix, a carrier-grade NAT now and then, loss, jitter and duplication:
    /// every seeded run has every property of `PunchOutcome.violations` (`make simulate` runs more).
    @Test func seededScenariosKeepEveryProperty() {
        let report = SimulationReport.run(seeds: 0..<5000)
        print(report.table)
        #expect(report.failures.isEmpty, "\(report.failures.prefix(3).map { "\($0.summary): \($0.violations) — make simulate SEED=\($0.scenario.seed)" })")
        #expect(report.cells.count == 29, "every cell of the matrix, and two members behind each NAT type")
    }

    /// Parties of 20: every pair punches at once on the members' one WireGuard port each (the
    /// driver multiplexing sessions, budgets and fans), and every pair keeps the pair's properties.
    @Test func partiesOfTwentyKeepEveryPairsProperties() {
        for seed: UInt64 in 0..<10 {
            let outcome = PartyScenario.drawn(seed: seed).run()
            print(outcome.summary)
            #expect(outcome.pairs.count == 190)
            #expect(outcome.violations.isEmpty, "\(outcome.summary): \(outcome.violations.prefix(3)) — make simulate PARTY=20 SEED=\(seed)")
        }
    }

    /// On a clean network each cell behaves as the lab's matrix: direct in the first round but
    /// symmetric ↔ symmetric, which is relayed without a punch.
    @Test(arguments: PunchScenario.types)
    func cleanCellsConnectInTheFirstRound(_ a: NATType) {
        for b in PunchScenario.types {
            let outcome = PunchScenario(seed: 7, sites: [.init(a), .init(b)], conditions: .clean).run()
            #expect(outcome.violations.isEmpty, "\(outcome.summary): \(outcome.violations)")
            #expect(outcome.detected == [a, b], "\(outcome.summary)")
            if a == .symmetric && b == .symmetric {
                #expect(!outcome.direct && outcome.plan == .relay)
            } else {
                #expect(outcome.direct && outcome.rounds == 1, "\(outcome.summary)")
            }
        }
    }

    /// One seed, one run: the same trace, datagram for datagram.
    @Test func aSeedReplaysExactly() {
        for seed: UInt64 in [1, 2, 3] {
            let first = PunchScenario.drawn(seed: seed).run(verbose: true), second = PunchScenario.drawn(seed: seed).run(verbose: true)
            #expect(first.trace == second.trace && first.timeToDirect == second.timeToDirect)
        }
        #expect(PunchScenario.drawn(seed: 1).run(verbose: true).trace != PunchScenario.drawn(seed: 2).run(verbose: true).trace)
    }

    /// Two members behind one NAT, of any type, with and without hairpinning: direct over the LAN
    /// (their LAN addresses are candidates), or over the shared public address when the router
    /// hairpins.
    @Test(arguments: [NATType.fullCone, .restrictedCone, .portRestrictedCone, .symmetric])
    func membersBehindOneNATGoDirect(_ nat: NATType) {
        for hairpin in [false, true] {
            var scenario = PunchScenario(seed: 11, sites: [.init(nat), .init(nat)], conditions: .clean)
            scenario.sameSite = true
            scenario.hairpin = hairpin
            let outcome = scenario.run()
            #expect(outcome.violations.isEmpty, "\(outcome.summary): \(outcome.violations)")
            #expect(outcome.direct && outcome.rounds == 1, "\(outcome.summary)")
            #expect(outcome.pinned.compactMap { $0?.address } == [.v4(IPv4Address(198, 51, 100, 3)), .v4(IPv4Address(198, 51, 100, 2))],
                    "the LAN address is punched first: \(outcome.pinned)")
        }
    }

    /// A router that forgets its mappings in the middle of the punch: the pair still goes direct.
    @Test(arguments: [NATType.portRestrictedCone, .symmetric])
    func aFlushedRouterMidPunchStillEndsDirect(_ nat: NATType) {
        for after in [0, 150, 400, 2500] {
            var scenario = PunchScenario(seed: 5, sites: [.init(nat), .init(.restrictedCone)], conditions: .clean)
            scenario.flush = (0, .milliseconds(after))
            let outcome = scenario.run()
            #expect(outcome.violations.isEmpty && outcome.direct, "\(outcome.summary): \(outcome.violations)")
        }
    }

    /// A carrier-grade NAT in front of a home NAT: the member sees the stricter of the two.
    @Test func doubleNATIsDetectedAsTheStricter() {
        let outcome = PunchScenario(seed: 3, sites: [.init(.fullCone, carrier: .symmetric), .init(.restrictedCone)],
                                    conditions: .clean).run()
        #expect(outcome.detected == [.symmetric, .restrictedCone], "\(outcome.summary)")
        #expect(outcome.direct, "\(outcome.summary)")
    }
}
