import Net
import Peer
import Punch
import STUN
import Time

/// A party on the simulated network: `size` members, most at sites of their own behind NATs of
/// the matrix (a carrier-grade NAT in front one time in eight), one in five in a house with a
/// member drawn before it. All detect their NAT; then every pair punches at once on the members'
/// one WireGuard port each — the agent's punch driver multiplexing every peer's session, probe
/// budget and fan — starting when the control server would bring the two together (within 2 s).
public struct PartyScenario: Sendable, CustomStringConvertible {
    public var seed: UInt64
    /// The sites, and each member's site.
    public var sites: [PunchScenario.Site]
    public var memberSites: [Int]
    public var hairpin: Bool
    public var conditions: LinkConditions
    public var timings = PeerTimings()
    /// Punch rounds per pair. More than a pair's four: the port-restricted members of a party share
    /// one allowance of guesses (`PunchDriver.guessesPerMinute`) among all their symmetric peers.
    public var rounds = 8

    /// The party of `seed`, of `size` members.
    public static func drawn(seed: UInt64, size: Int = 20) -> PartyScenario {
        var random = SimulationRandom(seed: seed ^ 0x9A27_7E5C)
        var sites: [PunchScenario.Site] = [], memberSites: [Int] = []
        let carriers: [NATType] = [.portRestrictedCone, .symmetric, .fullCone]
        for _ in 0..<size {
            // A house holds two members at most; a second member needs a router in front.
            let houses = sites.indices.filter { site in sites[site].nat != .open && memberSites.filter { $0 == site }.count == 1 }
            if !houses.isEmpty, random.happens(1.0 / 5) {
                memberSites.append(houses.randomElement(using: &random)!)
            } else {
                sites.append(.init(PunchScenario.types.randomElement(using: &random)!,
                                   carrier: random.happens(1.0 / 8) ? carriers.randomElement(using: &random)! : nil))
                memberSites.append(sites.count - 1)
            }
        }
        return PartyScenario(seed: seed, sites: sites, memberSites: memberSites, hairpin: random.happens(0.5),
                             conditions: .drawn(using: &random))
    }

    public var description: String {
        "party seed \(seed): \(memberSites.count) members at \(sites.count) sites\(hairpin ? " (hairpin)" : ""), \(conditions)"
    }

    /// The scenario that describes the pair of members `a` and `b` (for its properties).
    func pair(_ a: Int, _ b: Int) -> PunchScenario {
        var pair = PunchScenario(seed: seed, sites: [sites[memberSites[a]], sites[memberSites[b]]], conditions: conditions)
        pair.sameSite = memberSites[a] == memberSites[b]
        pair.hairpin = hairpin
        pair.timings = timings
        pair.rounds = rounds
        return pair
    }

    /// The party's sites and members on `network`, the routers hairpinning or not; with each
    /// member's public address as the control server sees it.
    func build(on network: SimulatedNetwork) -> (members: [SimulatedMember], observed: [IPAddress]) {
        var built: [(host: SimulatedHost, outermost: IPv4Address, members: Int)] = []
        var members: [SimulatedMember] = []
        for (index, site) in memberSites.enumerated() {
            let host: SimulatedHost
            if site < built.count {
                // The house's second member: on its LAN, the next address.
                let first = built[site].host
                host = network.addHost("member-\(index)", address: IPv4Address(first.address.value + 1), on: first.segment)
                built[site].members += 1
            } else {
                let n = UInt8(site)
                let addresses = SiteAddresses(open: IPv4Address(203, 0, 113, 64 + n), carrier: IPv4Address(203, 0, 113, 128 + n),
                                              home: IPv4Address(203, 0, 113, 1 + n), homeBehindCarrier: IPv4Address(198, 51, 100, 64),
                                              member: IPv4Address(198, 51, 100, 2))
                let site = PunchScenario.build(sites[site], index: site, addresses: addresses, on: network)
                built.append((site.host, site.outermost, 1))
                host = site.host
            }
            members.append(SimulatedMember(index: index, host: host, network: network))
        }
        for router in network.routers { router.hairpin = hairpin }
        return (members, memberSites.map { IPAddress.v4(built[$0].outermost) })
    }

    /// Runs the party; `verbose` traces every datagram lost, filtered or dropped as well.
    public func run(verbose: Bool = false) -> PartyOutcome {
        let network = SimulatedNetwork(seed: seed, conditions: conditions, verbose: verbose)
        network.note("scenario \(self)")
        let servers = ScenarioServers(on: network)
        defer { withExtendedLifetime(servers) {} }

        let (members, observed) = build(on: network)
        servers.detect(members, keepalive: timings.persistentKeepalive, on: network)

        var pairs: [(a: Int, b: Int, punch: PairPunch)] = []
        for a in members.indices {
            for b in members.indices where b > a {
                let punch = PairPunch(members[a], members[b], observed: [observed[a], observed[b]], timings: timings, rounds: rounds,
                                      on: network)
                pairs.append((a, b, punch))
                network.after(.nanoseconds(network.random.nanoseconds(in: 0...2_000_000_000))) { punch.start() }
            }
        }
        let begun = network.clock.now
        network.run(until: network.clock.now + PunchScenario.patience) { pairs.allSatisfy { $0.punch.settled } }

        var outcome = PartyOutcome(scenario: self)
        for (a, b, punch) in pairs {
            var pair = PunchOutcome(scenario: self.pair(a, b))
            pair.detected = [members[a].detectedType, members[b].detectedType]
            pair.record(punch)
            pair.hostAddresses = [.v4(members[a].host.address), .v4(members[b].host.address)]
            outcome.pairs.append((a, b, pair))
        }
        outcome.meshedAfter = network.clock.now - begun
        outcome.tableFull = network.routers.reduce(0) { $0 + $1.tableFull }
        outcome.fanPortsOpenAtEnd = members.map { $0.driver.fanSocketCount }.max() ?? 0
        outcome.datagrams = network.delivered + network.lost + network.filtered + network.unroutable
        outcome.trace = network.trace
        return outcome
    }
}

/// What a party run did: every pair's outcome and its properties.
public struct PartyOutcome: Sendable {
    public var scenario: PartyScenario
    public var pairs: [(a: Int, b: Int, outcome: PunchOutcome)] = []
    /// From the first pair's start until every pair settled, in virtual time.
    public var meshedAfter: Nanoseconds = 0
    /// Datagrams the routers dropped for a full conntrack table.
    public var tableFull = 0
    public var fanPortsOpenAtEnd = 0
    public var datagrams = 0
    public var trace: [String] = []

    /// Every pair's broken properties, each named by its pair.
    public var violations: [String] {
        (tableFull > 0 ? ["\(tableFull) datagrams dropped for a full conntrack table"] : []) + pairs.flatMap { pair in pair.outcome.violations.map { "\(pair.a) ↔ \(pair.b) (\(pair.outcome.scenario.sites[0]) ↔ \(pair.outcome.scenario.sites[1])): \($0)" } }
    }

    public var direct: Int { pairs.filter { $0.outcome.direct }.count }

    /// Direct pairs by the round that connected them (index 0: round 1).
    public var byRound: [Int] {
        (1...scenario.rounds).map { round in pairs.filter { $0.outcome.direct && $0.outcome.rounds == round }.count }
    }

    public var summary: String {
        "\(scenario) → \(direct) of \(pairs.count) pairs direct (by round \(byRound.map { "\($0)" }.joined(separator: "/"))), "
            + "settled after \(meshedAfter / 1_000_000) ms, \(datagrams) datagrams"
    }
}
