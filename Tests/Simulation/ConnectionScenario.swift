import Net
import Peer
import Punch
import STUN
import Time

/// Two members behind the NATs of a matrix cell, each with the agent's peer connection: the real
/// peer chart and `PeerConnection` over the real NAT detector and punch driver, WireGuard as
/// ``SimulatedWireGuard`` models it, the real control client and core (``SimulatedControlServer``)
/// and a forwarding relay. The members register up to 2 s apart and meet as the control server
/// introduces them, connect through the early relay, punch, go direct (or stay relayed), carry
/// traffic or only keepalives, and at the end leave.
/// Link conditions, traffic and when things happen come from the seed; a seed replays exactly.
public struct ConnectionScenario: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var sites: [NATType]
    public var conditions: LinkConditions
    /// How often each member's tunnel carries a datagram of its own traffic; `nil`: keepalives only.
    public var traffic: Duration?
    /// Whether each member also pings the other every 200 ms from the start for 30 s, as a user
    /// waiting for the tunnel does: traffic through the early relay while the direct path comes up.
    public var pings = false
    /// Whether both members are in one house, behind one router (a party's pair).
    public var sameSite = false
    /// Whether a member of the pair needs port prediction with other peers too (a party's pair of
    /// port-restricted cone ↔ symmetric): the guess allowance (`PunchDriver.guessesPerMinute`) and
    /// the fan ports (`PunchDriver.fanSocketLimit`) are shared by all of them, which spreads the
    /// member's attempts over minutes. Either path is expected, settled before the members leave.
    public var sharesPortPrediction = false
    /// How long after the meeting the members leave (a run lasts longer when a fault needs it).
    public var length: Duration = .seconds(240)
    /// A router that forgets its mappings (conntrack flushed, or a reboot) once the pair settled:
    /// the side whose router, and when after the members start.
    public var flush: (side: Int, after: Duration)?
    public var timings = PeerTimings()

    public init(seed: UInt64, sites: [NATType], conditions: LinkConditions, traffic: Duration?) {
        precondition(sites.count == 2, "a pair")
        self.seed = seed
        self.sites = sites
        self.conditions = conditions
        self.traffic = traffic
    }

    /// The cells: every pair of the matrix's NAT types.
    public static let cells: [[NATType]] = PunchScenario.types.flatMap { a in PunchScenario.types.map { [a, $0] } }

    /// The scenario of `seed`: a cell, link conditions and traffic, all drawn from the seed.
    public static func drawn(seed: UInt64) -> ConnectionScenario {
        var random = SimulationRandom(seed: seed ^ 0xC0_22EC_7105)
        let cell = cells.randomElement(using: &random)!
        let traffic: [Duration?] = [nil, .seconds(1), .seconds(7)]
        var scenario = ConnectionScenario(seed: seed, sites: cell, conditions: .drawn(using: &random),
                                          traffic: traffic.randomElement(using: &random)!)
        // Drawn after the rest, so that the other scenarios keep what a seed gave them.
        scenario.pings = random.happens(1.0 / 3)
        let natted = (0..<2).filter { cell[$0] != .open }
        if random.happens(1.0 / 4), let side = natted.randomElement(using: &random) {
            scenario.flush = (side, .milliseconds(Int64(60_000 + random.next() % 90_000)))
        }
        return scenario
    }

    /// Whether a pair at `sites` needs port prediction for a direct path: port-restricted cone ↔
    /// symmetric, not in one house.
    static func needsPortPrediction(_ sites: [NATType], sameSite: Bool) -> Bool {
        !sameSite && Set(sites) == [.portRestrictedCone, .symmetric]
    }

    /// Whether the pair must end direct: in one house, or in every cell but symmetric ↔ symmetric.
    public var directExpected: Bool { sameSite || !(sites[0] == .symmetric && sites[1] == .symmetric) }

    public var description: String {
        let flushed = flush.map { ", side \($0.side)'s router flushed \($0.after) in" } ?? ""
        let traffic = "traffic \(traffic.map { "every \($0)" } ?? "none")\(pings ? ", pings for 30 s" : "")"
        return "seed \(seed): \(sites[0]) ↔ \(sites[1]), \(conditions), \(traffic)\(flushed)"
    }

    // MARK: Running

    /// Runs the scenario; `verbose` traces every datagram lost, filtered or dropped as well.
    public func run(verbose: Bool = false) -> ConnectionOutcome {
        let network = SimulatedNetwork(seed: seed, conditions: conditions, verbose: verbose)
        network.note("scenario \(self)")
        let servers = ScenarioServers(on: network)
        defer { withExtendedLifetime(servers) {} }
        var members: [SimulatedMember] = []
        var publicAddresses: [IPAddress] = []
        var routers: [SimulatedRouter?] = []
        for (index, nat) in sites.enumerated() {
            let built = PunchScenario.build(.init(nat), index: index, addresses: PunchScenario.addresses(ofSite: UInt8(index)), on: network)
            members.append(SimulatedMember(index: index, host: built.host, network: network))
            publicAddresses.append(.v4(built.outermost))
            routers.append(built.router)
        }
        servers.detect(members, keepalive: nil, on: network)
        let server = SimulatedControlServer(on: network)
        let agents = members.map { SimulatedAgent(member: $0, timings: timings, server: server, network: network) }
        // The members register up to 2 s apart; they meet as the control server introduces them.
        let begun = network.clock.now
        for agent in agents {
            agent.know(members)
            network.after(.nanoseconds(network.random.nanoseconds(in: 0...2_000_000_000))) { agent.join() }
        }
        if let flush, let router = routers[flush.side] {
            network.after(flush.after) {
                router.flush()
                network.note("\(router.name) flushed its mappings")
            }
        }
        var outcome = ConnectionOutcome(scenario: self)
        // Through the port fan, a flush breaks the path without a word: either side's new mapping is
        // one the other side's filter does not let in, and the path is learned lost from the silence.
        outcome.silentFault = flush != nil && Self.needsPortPrediction(sites, sameSite: sameSite)
        // The run lasts until the pair had its time to recover, and half a minute more.
        let end = begun + max(length.nanoseconds, (flush?.after.nanoseconds ?? 0) + outcome.recoveryBound + 30_000_000_000)
        // Each side's traffic at a phase of its own.
        for (interval, until) in [(pings ? Duration.milliseconds(200) : nil, begun + 30_000_000_000), (traffic, end)] {
            guard let interval else { continue }
            for (index, agent) in agents.enumerated() {
                let phase = Duration.nanoseconds(network.random.nanoseconds(in: 0...interval.nanoseconds))
                network.after(phase) { Self.send(every: interval, from: agent, to: 1 - index, until: until, on: network) }
            }
        }
        network.run(until: end)
        outcome.met = [agents[0].metAt[1], agents[1].metAt[0]].reduce(begun) { max($0, $1 ?? end) }
        outcome.detected = members.map { $0.detectedType }
        outcome.faultAt = flush.map { begun + $0.after.nanoseconds }
        outcome.record(agents, server: server, at: end, wall: network.clock.wallMilliseconds)
        for agent in agents { agent.leave() }
        network.run(until: end + 10_000_000_000)
        outcome.recordLeaving(agents)
        if server.relay.held > 0 { outcome.leftovers.append("the relay still holds \(server.relay.held) ports") }
        outcome.punchRequests = agents.reduce(0) { $0 + $1.punchRequests }
        outcome.relayRequests = agents.reduce(0) { $0 + $1.relayRequests }
        outcome.datagrams = (network.delivered, network.lost, network.filtered, network.unroutable)
        outcome.runaway = network.runaway
        outcome.trace = network.trace
        return outcome
    }

    static func send(every interval: Duration, from agent: SimulatedAgent, to peer: Int, until end: Nanoseconds,
                             on network: SimulatedNetwork) {
        network.after(interval) { [weak agent] in
            guard let agent, network.clock.now < end else { return }
            agent.wireGuard.sendData(84, to: peer)
            send(every: interval, from: agent, to: peer, until: end, on: network)
        }
    }
}
