import Net
import Peer
import Punch
import STUN
import Time

/// Two members at two sites behind the NATs of a matrix cell (each maybe behind a carrier-grade
/// NAT as well), under the link conditions of a seed: both detect their NAT with the agent's
/// detector against an RFC 5780 STUN server, take the plan the agent takes from the two detected
/// types, and punch with the agent's punch driver — coordinated rounds as the control server
/// announces them (a side that misses the announcement punches in a session of its own after the
/// detection timeout), port prediction with the agent's fan and spray, a new round after each
/// failed one at the upgrade backoff. Whatever the seed, the run is the same.
public struct PunchScenario: Sendable, CustomStringConvertible {
    /// One side: its home NAT (`.open`: none), and the carrier's in front of it, if any.
    public struct Site: Sendable, Equatable, CustomStringConvertible {
        public var nat: NATType
        public var carrier: NATType?

        public init(_ nat: NATType, carrier: NATType? = nil) {
            self.nat = nat
            self.carrier = carrier
        }

        /// What a member there sees: the stricter of the two NATs (a mapping is endpoint-independent
        /// only if both are; a datagram gets in only if both filters let it).
        public var effective: NATType {
            guard let carrier else { return nat }
            return Self.strictness.firstIndex(of: carrier)! > Self.strictness.firstIndex(of: nat)! ? carrier : nat
        }

        static let strictness: [NATType] = [.open, .fullCone, .restrictedCone, .portRestrictedCone, .symmetric]

        public var description: String { carrier.map { "\(nat) behind \($0)" } ?? "\(nat)" }
    }

    public var seed: UInt64
    public var sites: [Site]
    public var conditions: LinkConditions
    /// Both members behind the first site's NAT (the second site is ignored), on one LAN.
    public var sameSite = false
    /// Whether the routers hairpin (a datagram to their own public address from inside goes back in).
    public var hairpin = false
    /// A router that forgets its mappings (conntrack flushed, or a reboot) during the first round:
    /// the side whose router, and when after the round began.
    public var flush: (side: Int, after: Duration)?
    public var timings = PeerTimings()
    /// Punch rounds before giving up (the agent goes on upgrading for ever, every 30 s doubling to 10 min).
    public var rounds = 4

    public init(seed: UInt64, sites: [Site], conditions: LinkConditions) {
        precondition(sites.count == 2, "a pair")
        self.seed = seed
        self.sites = sites
        self.conditions = conditions
    }

    /// The NATs the matrix has: no NAT and the four RFC 3489 types.
    public static let types: [NATType] = Site.strictness

    /// The scenario of `seed`: a cell of the 5 × 5 matrix, a carrier-grade NAT in front of a side
    /// one time in eight, and link conditions — all drawn from the seed.
    public static func drawn(seed: UInt64) -> PunchScenario {
        var random = SimulationRandom(seed: seed ^ 0x5EED_CE11)
        let carriers: [NATType] = [.portRestrictedCone, .symmetric, .fullCone]
        let sites = (0..<2).map { _ in
            Site(types.randomElement(using: &random)!, carrier: random.happens(1.0 / 8) ? carriers.randomElement(using: &random)! : nil)
        }
        var scenario = PunchScenario(seed: seed, sites: sites, conditions: .drawn(using: &random))
        // Drawn after the rest, so that the other scenarios keep what a seed gave them.
        if random.happens(1.0 / 10) {
            scenario.sameSite = true
            if scenario.sites[0].nat == .open && scenario.sites[0].carrier == nil { scenario.sites[0].nat = .portRestrictedCone }
            scenario.sites[1] = scenario.sites[0]
        }
        scenario.hairpin = random.happens(0.5)
        if random.happens(1.0 / 10) { scenario.flush = (Int(random.next() % 2), .milliseconds(Int64(random.next() % 3000))) }
        return scenario
    }

    /// Whether the pair must end direct: every cell but symmetric ↔ symmetric (the lab matrix's
    /// table), and any two members on one LAN.
    public var directExpected: Bool {
        sameSite || !(sites[0].effective == .symmetric && sites[1].effective == .symmetric)
    }

    public var description: String {
        let pair = sameSite ? "both behind \(sites[0])" : "\(sites[0]) ↔ \(sites[1])"
        let flushed = flush.map { ", side \($0.side)'s router flushed \($0.after) into the punch" } ?? ""
        return "seed \(seed): \(pair)\(hairpin ? " (hairpin)" : ""), \(conditions)\(flushed)"
    }

    // MARK: Running

    /// Runs the scenario; `verbose` traces every datagram lost, filtered or dropped as well.
    public func run(verbose: Bool = false) -> PunchOutcome {
        let network = SimulatedNetwork(seed: seed, conditions: conditions)
        network.verbose = verbose
        network.note("scenario \(self)")
        let primary = Endpoint("192.0.2.1:3478")!, alternate = Endpoint("192.0.2.2:3479")!
        let stun = SimulatedSTUNServer(on: network, primary: primary, alternate: alternate)
        defer { withExtendedLifetime(stun) {} }
        var publicAddresses: [IPv4Address] = []
        var routers: [SimulatedRouter?] = []
        var members: [SimulatedMember] = []
        for (index, site) in sites.enumerated() {
            let host: SimulatedHost
            if sameSite, index == 1 {
                host = network.addHost("member-1", address: IPv4Address(198, 51, 100, 3), on: members[0].host.segment)
                publicAddresses.append(publicAddresses[0])
                routers.append(routers[0])
            } else {
                let built = Self.build(site, index: index, on: network)
                host = built.host
                publicAddresses.append(built.outermost)
                routers.append(built.router)
            }
            members.append(SimulatedMember(name: index == 0 ? "a" : "b", host: host, network: network))
        }
        for router in network.routers { router.hairpin = hairpin }
        var outcome = PunchOutcome(scenario: self)

        // Both detect, each starting within 300 ms.
        for member in members {
            network.after(.nanoseconds(network.random.nanoseconds(in: 0...300_000_000))) {
                member.detector.start(servers: [primary], localAddresses: [.v4(member.host.address)])
            }
        }
        network.run(until: network.clock.now + 10_000_000_000) { members.allSatisfy { $0.detection != nil } }
        outcome.detected = members.map { $0.detection == nil ? nil : $0.natType }
        // Both sides know where the control server saw each: the outermost public addresses.
        let samePublicAddress = publicAddresses[0] == publicAddresses[1]
        let plan = DirectPathPlan(local: members[0].natType, remote: members[1].natType, samePublicAddress: samePublicAddress)
        outcome.plan = plan
        network.note("plan: \(plan)")

        if let flush, let router = routers[flush.side] {
            network.after(.milliseconds(500) + flush.after) {
                router.flush()
                network.note("\(router.name) flushed its mappings")
            }
        }
        if plan.directPossible {
            let begun = network.clock.now
            for round in 0..<rounds {
                if punch(round: round, members, publicAddresses, on: network) {
                    outcome.direct = true
                    outcome.rounds = round + 1
                    outcome.timeToDirect = max(members[0].pinned!.at, members[1].pinned!.at) - begun
                    outcome.pinned = members.map { $0.pinned?.endpoint }
                    outcome.throughFan = members.contains { $0.pinned?.throughFan == true }
                    break
                }
                for member in members { member.closeFan() }
                network.run(until: network.clock.now + timings.upgradeDelay(attempt: round).nanoseconds)
            }
        }
        outcome.publicAddresses = publicAddresses.map { .v4($0) }
        outcome.hostAddresses = members.map { .v4($0.host.address) }
        outcome.mappingsHeld = network.routers.map { $0.mappingCount }.max() ?? 0
        outcome.datagrams = (network.delivered, network.lost, network.filtered, network.unroutable)
        outcome.trace = network.trace
        return outcome
    }

    /// The site's routers and the member's host on the network; returns the host, the site's
    /// outermost public address and the router in front of the host.
    private static func build(_ site: Site, index: Int, on network: SimulatedNetwork)
        -> (host: SimulatedHost, outermost: IPv4Address, router: SimulatedRouter?) {
        let n = UInt8(index)
        var segment = SimulatedNetwork.internet
        var outermost = IPv4Address(203, 0, 113, 10 + n)
        var front: SimulatedRouter?
        if let carrier = site.carrier {
            let router = network.addRouter("carrier-\(index)", behaviour: carrier, wan: IPv4Address(203, 0, 113, 100 + n))
            segment = router.inside
            outermost = router.wan
            front = router
        }
        if site.nat != .open {
            let wan = site.carrier == nil ? IPv4Address(203, 0, 113, 1 + n) : IPv4Address(198, 51, 100, 64 + n)
            let router = network.addRouter("home-\(index)", behaviour: site.nat, wan: wan, on: segment)
            segment = router.inside
            if site.carrier == nil { outermost = wan }
            front = router
        }
        let address = segment == SimulatedNetwork.internet ? outermost : IPv4Address(198, 51, 100, 2 + 128 * n)
        return (network.addHost("member-\(index)", address: address, on: segment), outermost, front)
    }

    /// One coordinated round; returns whether both sides pinned.
    private func punch(round: Int, _ members: [SimulatedMember], _ publicAddresses: [IPv4Address], on network: SimulatedNetwork) -> Bool {
        let announced = network.random.next()
        let roundStart = network.clock.now
        var latestStart = roundStart
        for (index, member) in members.enumerated() {
            let peer = members[1 - index]
            member.pinned = nil
            // The announcement is one datagram from the control server: lost, the side punches in a
            // session of its own once its detection timeout expires.
            let missed = network.random.happens(conditions.loss)
            let session = missed ? network.random.next() : announced
            let start = roundStart + (missed ? timings.detection.nanoseconds : 500_000_000)
            latestStart = max(latestStart, start)
            let candidates = [peer.local] + (peer.report.map { [$0.publicEndpoint] } ?? [])
            let observed = IPAddress.v4(publicAddresses[1 - index])
            let role = PortPredictionRole(local: member.natType, remote: peer.natType, observed: observed,
                                          reachable: peer.report?.publicEndpoint,
                                          samePublicAddress: publicAddresses[0] == publicAddresses[1])
            network.after(.nanoseconds(start - network.clock.now)) {
                network.note("\(member.name) punches in session \(session)\(missed ? " (missed the announcement)" : "")")
                member.driver.start(SimulatedMember.peer, PunchSession(key: Self.pairKey(member, peer), session: session,
                                                                       candidates: candidates,
                                                                       learned: member.driver.learned(SimulatedMember.peer)),
                                    observed: observed)
            }
            // Each attempt starts with the side's part in port prediction, as the agent's does.
            for attempt in 0..<timings.punchAttempts {
                for packet in 0..<timings.punchPackets {
                    let at = start + (timings.punchAttempt * attempt + timings.punchInterval * packet).nanoseconds
                    network.after(.nanoseconds(at - network.clock.now)) {
                        switch role {
                        case .spray(let address) where packet == 0:
                            let guess = PortPrediction(observed: [], budget: DirectPathPlan.sprayGuesses, using: &network.random)
                            member.driver.probe(SimulatedMember.peer, guess.ports.map { Endpoint(address, $0) })
                        case .fan(let target) where packet == 0:
                            member.openFan(toward: target)
                        default:
                            break
                        }
                        member.driver.burst(SimulatedMember.peer)
                    }
                }
            }
        }
        let end = latestStart + (timings.punchAttempt * timings.punchAttempts).nanoseconds
        return network.run(until: end) { members.allSatisfy { $0.pinned != nil } }
    }

    private static func pairKey(_ member: SimulatedMember, _ peer: SimulatedMember) -> PairKey {
        PairKey(localPrivateKey: member.privateKey, localPublicKey: member.publicKey, remotePublicKey: peer.publicKey)!
    }
}
