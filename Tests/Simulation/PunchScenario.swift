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
        let network = SimulatedNetwork(seed: seed, conditions: conditions, verbose: verbose)
        network.note("scenario \(self)")
        let servers = ScenarioServers(on: network)
        defer { withExtendedLifetime(servers) {} }
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
                let built = Self.build(site, index: index, addresses: Self.addresses(ofSite: UInt8(index)), on: network)
                host = built.host
                publicAddresses.append(built.outermost)
                routers.append(built.router)
            }
            members.append(SimulatedMember(index: index, host: host, network: network))
        }
        for router in network.routers { router.hairpin = hairpin }
        var outcome = PunchOutcome(scenario: self)

        servers.detect(members, keepalive: timings.persistentKeepalive, on: network)
        outcome.detected = members.map { $0.detectedType }

        if let flush, let router = routers[flush.side] {
            network.after(.milliseconds(500) + flush.after) {
                router.flush()
                network.note("\(router.name) flushed its mappings")
            }
        }
        let pair = PairPunch(members[0], members[1], observed: publicAddresses.map { .v4($0) }, timings: timings, rounds: rounds, on: network)
        network.note("plan: \(pair.plan)")
        pair.start()
        network.run(until: network.clock.now + Self.patience) { pair.settled }
        outcome.record(pair)
        outcome.hostAddresses = members.map { .v4($0.host.address) }
        outcome.tableFull = network.routers.reduce(0) { $0 + $1.tableFull }
        outcome.datagrams = (network.delivered, network.lost, network.filtered, network.unroutable)
        outcome.trace = network.trace
        return outcome
    }

    /// How long a run may take in virtual time: eight rounds and their backoffs (35 min) fit in it.
    static let patience: Nanoseconds = 60 * 60 * 1_000_000_000

    /// The addresses of site `n` of a scenario: the two sites' LANs differ.
    static func addresses(ofSite n: UInt8) -> SiteAddresses {
        SiteAddresses(open: IPv4Address(203, 0, 113, 10 + n), carrier: IPv4Address(203, 0, 113, 100 + n),
                      home: IPv4Address(203, 0, 113, 1 + n), homeBehindCarrier: IPv4Address(198, 51, 100, 64 + n),
                      member: IPv4Address(198, 51, 100, 2 + 128 * n))
    }

    /// The site's routers and the member's host on the network; returns the host, the site's
    /// outermost public address and the router in front of the host.
    static func build(_ site: Site, index: Int, addresses: SiteAddresses, on network: SimulatedNetwork)
        -> (host: SimulatedHost, outermost: IPv4Address, router: SimulatedRouter?) {
        var segment = SimulatedNetwork.internet
        var outermost = addresses.open
        var front: SimulatedRouter?
        if let carrier = site.carrier {
            let router = network.addRouter("carrier-\(index)", behaviour: carrier, wan: addresses.carrier)
            segment = router.inside
            outermost = router.wan
            front = router
        }
        if site.nat != .open {
            let wan = site.carrier == nil ? addresses.home : addresses.homeBehindCarrier
            let router = network.addRouter("home-\(index)", behaviour: site.nat, wan: wan, on: segment)
            segment = router.inside
            if site.carrier == nil { outermost = wan }
            front = router
        }
        let address = segment == SimulatedNetwork.internet ? outermost : addresses.member
        return (network.addHost("member-\(index)", address: address, on: segment), outermost, front)
    }
}

/// Where a site's routers and first member sit.
struct SiteAddresses {
    /// A member with no NAT at all, on the Internet.
    var open: IPv4Address
    /// The carrier-grade NAT's public address.
    var carrier: IPv4Address
    /// The home router's public address, and its address on the carrier's LAN behind one.
    var home: IPv4Address
    var homeBehindCarrier: IPv4Address
    /// The first member's LAN address (a second at the site takes the next).
    var member: IPv4Address
}
