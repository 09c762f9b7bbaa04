import Net
import Peer
import Punch
import STUN
import Time

/// A party whose members hold full connections to one another: the sites of a ``PartyScenario``
/// (a carrier-grade NAT in front now and then, two members in a house, hairpinning routers or
/// not), each member an agent (``SimulatedAgent``) with a peer connection to every other, all on
/// one WireGuard port, over the scenario's control server and relay. Members join within 10 s;
/// each pair carries traffic drawn like a connection scenario's. Once the party settled, one fault
/// may strike: a router forgets its mappings, the relay restarts (every allocation gone), the
/// control server restarts (down for a few seconds, back with its registry as saved, every member
/// offline until it registers again), or a router on the Internet gets a new public address. Every pair must keep
/// the properties of a ``ConnectionOutcome``; a seed replays exactly.
public struct ConnectionParty: Sendable, CustomStringConvertible {
    /// A fault that strikes the whole party once.
    public enum Fault: Sendable, Equatable, CustomStringConvertible {
        /// The router of this index (in the order the network built them) forgets its mappings.
        case flush(router: Int)
        /// The relay restarts: every allocation is gone.
        case relayRestart
        /// The control server restarts: down for 3 s, back with another epoch and the registry as saved.
        case controlRestart
        /// The router of this index among those on the Internet gets a new public address (a new
        /// lease), and forgets its mappings.
        case addressChange(router: Int)

        public var description: String {
            switch self {
            case .flush(let router): "router \(router) flushed"
            case .relayRestart: "the relay restarted"
            case .controlRestart: "the control server restarted"
            case .addressChange(let router): "router \(router) renumbered"
            }
        }
    }

    public var sites: PartyScenario
    /// Each pair's traffic (see ``ConnectionScenario/traffic``), by the pair's index in the order
    /// `(0, 1), (0, 2), …, (1, 2), …`.
    public var traffic: [Duration?]
    /// The fault, and when after the first member joined.
    public var fault: (fault: Fault, after: Duration)?
    /// How long after the first member joined every member leaves: long enough for a pair to
    /// notice a silent fault late in the drawn window and settle again.
    public var length: Duration = .seconds(330)
    public var timings = PeerTimings()

    public var seed: UInt64 { sites.seed }
    public var size: Int { sites.memberSites.count }

    /// The party of `seed`, of `size` members.
    public static func drawn(seed: UInt64, size: Int = 20) -> ConnectionParty {
        let sites = PartyScenario.drawn(seed: seed, size: size)
        var random = SimulationRandom(seed: seed ^ 0xC0_22EC_7A27)
        let choices: [Duration?] = [nil, .seconds(1), .seconds(7)]
        let traffic = (0..<size * (size - 1) / 2).map { _ in choices.randomElement(using: &random)! }
        var party = ConnectionParty(sites: sites, traffic: traffic)
        let after = Duration.milliseconds(Int64(90_000 + random.next() % 60_000))
        switch random.next() % 5 {
        case 0: party.fault = nil
        case 1: party.fault = (.flush(router: Int(random.next() % 64)), after)
        case 2: party.fault = (.relayRestart, after)
        case 3: party.fault = (.controlRestart, after)
        default: party.fault = (.addressChange(router: Int(random.next() % 64)), after)
        }
        return party
    }

    public init(sites: PartyScenario, traffic: [Duration?]) {
        precondition(traffic.count == sites.memberSites.count * (sites.memberSites.count - 1) / 2, "a traffic per pair")
        self.sites = sites
        self.traffic = traffic
    }

    public var description: String {
        "connection \(sites)" + (fault.map { ", \($0.fault) \($0.after) in" } ?? "")
    }

    /// The connection scenario that describes the pair of members `a` and `b` (for its properties).
    func pair(_ a: Int, _ b: Int, index: Int) -> ConnectionScenario {
        let site = [sites.sites[sites.memberSites[a]], sites.sites[sites.memberSites[b]]]
        var pair = ConnectionScenario(seed: seed, sites: site.map(\.effective), conditions: sites.conditions, traffic: traffic[index])
        pair.sameSite = sites.memberSites[a] == sites.memberSites[b]
        pair.sharesPortPrediction = needsPortPrediction(a, b) && [a, b].contains { member in
            (0..<size).filter { $0 != member && needsPortPrediction(member, $0) }.count > 1
        }
        pair.length = length
        pair.timings = timings
        return pair
    }

    /// Whether members `a` and `b` need port prediction (``ConnectionScenario/needsPortPrediction(_:sameSite:)``).
    private func needsPortPrediction(_ a: Int, _ b: Int) -> Bool {
        ConnectionScenario.needsPortPrediction([sites.sites[sites.memberSites[a]].effective, sites.sites[sites.memberSites[b]].effective],
                                               sameSite: sites.memberSites[a] == sites.memberSites[b])
    }

    /// The address a renumbered router gets (no site has it).
    static let newAddress = IPv4Address(203, 0, 113, 250)

    // MARK: Running

    /// Runs the party; `verbose` traces every datagram lost, filtered or dropped as well.
    public func run(verbose: Bool = false) -> ConnectionPartyOutcome {
        let network = SimulatedNetwork(seed: seed, conditions: sites.conditions, verbose: verbose)
        network.note("scenario \(self)")
        let servers = ScenarioServers(on: network)
        defer { withExtendedLifetime(servers) {} }
        let (members, _) = sites.build(on: network)
        servers.detect(members, keepalive: nil, on: network)
        let server = SimulatedControlServer(on: network)
        let agents = members.map { SimulatedAgent(member: $0, timings: timings, server: server, network: network) }

        // Members join within 10 s: they register, and meet as the control server introduces them.
        let begun = network.clock.now
        let joined = members.map { _ in network.random.nanoseconds(in: 0...10_000_000_000) }
        var pairs: [(a: Int, b: Int, met: Nanoseconds)] = []
        for a in members.indices {
            agents[a].know(members)
            network.after(.nanoseconds(joined[a])) { agents[a].join() }
            for b in members.indices where b > a { pairs.append((a, b, begun + max(joined[a], joined[b]))) }
        }
        let end = begun + length.nanoseconds
        for (index, pair) in pairs.enumerated() {
            guard let interval = traffic[index] else { continue }
            for (from, to) in [(pair.a, pair.b), (pair.b, pair.a)] {
                let phase = pair.met - begun + network.random.nanoseconds(in: 0...interval.nanoseconds)
                network.after(.nanoseconds(phase)) {
                    ConnectionScenario.send(every: interval, from: agents[from], to: to, until: end, on: network)
                }
            }
        }
        if let fault {
            network.after(fault.after) {
                network.note("fault: \(fault.fault)")
                switch fault.fault {
                case .flush(let router):
                    network.routers.isEmpty ? () : network.routers[router % network.routers.count].flush()
                case .relayRestart:
                    server.relay.restart()
                case .controlRestart:
                    server.restart(down: .seconds(3))
                case .addressChange(let router):
                    let outside = network.routers.filter { $0.outside == SimulatedNetwork.internet }
                    guard !outside.isEmpty else { return }
                    let renumbered = outside[router % outside.count]
                    network.renumber(renumbered, to: Self.newAddress)
                    network.note("\(renumbered.name) is now at \(Self.newAddress)")
                }
            }
        }
        network.run(until: end)

        var outcome = ConnectionPartyOutcome(scenario: self)
        let faultAt = fault.map { begun + $0.after.nanoseconds }
        for (index, pair) in pairs.enumerated() {
            var one = ConnectionOutcome(scenario: self.pair(pair.a, pair.b, index: index))
            one.members = [pair.a, pair.b]
            // From when both had met the other (the later side), else the end: the pair never met.
            one.met = [agents[pair.a].metAt[pair.b], agents[pair.b].metAt[pair.a]].reduce(pair.met) { max($0, $1 ?? end) }
            one.faultAt = faultAt
            // A flushed or renumbered router may map the member's port anew, and its peers hear nothing more.
            one.silentFault = fault.map { $0.fault != .controlRestart } ?? false
            one.detected = [members[pair.a].detectedType, members[pair.b].detectedType]
            one.record([agents[pair.a], agents[pair.b]], server: server, at: end, wall: network.clock.wallMilliseconds)
            outcome.pairs.append(one)
        }
        for agent in agents { agent.leave() }
        network.run(until: end + 10_000_000_000)
        for index in outcome.pairs.indices {
            outcome.pairs[index].recordLeaving([agents[outcome.pairs[index].members[0]], agents[outcome.pairs[index].members[1]]])
        }
        network.note("relay: \(server.relay.core.counters)")
        if server.relay.held > 0 { outcome.leftovers.append("the relay still holds \(server.relay.held) ports") }
        outcome.punchRequests = agents.reduce(0) { $0 + $1.punchRequests }
        outcome.relayRequests = agents.reduce(0) { $0 + $1.relayRequests }
        outcome.datagrams = network.delivered + network.lost + network.filtered + network.unroutable
        outcome.runaway = network.runaway
        outcome.trace = network.trace
        return outcome
    }
}

/// What a ``ConnectionParty`` run did: every pair's outcome, and the party's own properties.
public struct ConnectionPartyOutcome: Sendable {
    public var scenario: ConnectionParty
    public var pairs: [ConnectionOutcome] = []
    /// What did not end when every member left every other.
    public var leftovers: [String] = []
    public var punchRequests = 0, relayRequests = 0
    public var datagrams = 0
    public var runaway = false
    public var trace: [String] = []

    /// The party's broken properties, then every pair's, each named by its pair.
    public var violations: [String] {
        (runaway ? ["runaway: something scheduled itself without end"] : []) + leftovers + pairs.flatMap { pair in
            pair.violations.map { "\(pair.members[0]) ↔ \(pair.members[1]) (\(pair.scenario.sites[0]) ↔ \(pair.scenario.sites[1])): \($0)" }
        }
    }

    public var direct: Int { pairs.filter { $0.paths == [.direct, .direct] }.count }
    public var relayed: Int { pairs.filter { $0.paths == [.relayed, .relayed] }.count }
    public var transitions: Int { pairs.reduce(0) { $0 + $1.transitions } }

    /// Every action of the chart some member executed.
    public var executed: Set<PeerAction> { pairs.reduce(into: []) { $0.formUnion($1.executed) } }

    /// The slowest pair's time from meeting to settled, in virtual time (`nil`: a pair never settled).
    public var settledAfter: Nanoseconds? {
        pairs.reduce(Nanoseconds?(0)) { slowest, pair in slowest.flatMap { a in pair.converged.map { max(a, $0) } } }
    }

    /// The slowest pair's time from the fault to its last step off an upgrade attempt (`nil`: no
    /// fault, or no pair moved).
    public var recoveredAfter: Nanoseconds? { pairs.compactMap(\.recovered).max() }

    public var summary: String {
        let settled = settledAfter.map { "every pair settled within \($0 / 1_000_000) ms" } ?? "a pair never settled"
        let recovered = recoveredAfter.map { ", every pair back \($0 / 1_000_000) ms after the fault" } ?? ""
        return "\(scenario) → \(direct) of \(pairs.count) pairs direct, \(relayed) relayed, \(settled)\(recovered), \(transitions) transitions, "
            + "\(punchRequests) punch and \(relayRequests) relay requests, \(datagrams) datagrams"
    }
}
