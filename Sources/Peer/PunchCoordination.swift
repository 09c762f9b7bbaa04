import Punch
import STUN
import Time

/// How the two members of a pair agree on a punch: whether a direct path is worth trying, which
/// member asks the control server for a coordinated instant, which session each attempt uses, and
/// how an announcement from the server is joined in each state of the connection.
public struct PunchCoordination: Sendable, Equatable {
    /// A punch the control server announced: its session (the server's start time, wall
    /// milliseconds) and when it starts here (monotonic).
    public struct Announcement: Sendable, Equatable {
        public var session: UInt64
        public var at: Nanoseconds
    }

    /// The announcement not yet started, if any.
    public private(set) var announced: Announcement?
    /// The session of the attempt under way or last made.
    public private(set) var session: UInt64?
    /// Whether `session` came from the control server's announcement (else this side made it up).
    public private(set) var sessionCoordinated = false
    /// Whether this side asked the control server for a punch it has not started yet.
    public private(set) var requested = false

    /// The farthest ahead an announced start is taken: one further off (or past) starts in at most this.
    public static let maxLead: Int64 = 5_000

    public init() {}

    /// What both members know when Detecting decides.
    public struct Facts: Sendable, Equatable {
        /// This side's NAT type (`unknown` until detection ends) and whether detection is running.
        public var localNAT: NATType
        public var detecting: Bool
        /// Whether this side's public endpoint (its first STUN answer) is known.
        public var reflexiveKnown: Bool
        /// The peer's announced NAT type, and whether it announced its public endpoint.
        public var peerNAT: NATType
        public var peerReflexiveKnown: Bool
        /// Whether this member's key is the smaller of the pair's two.
        public var localKeyIsSmaller: Bool
        /// Whether a path without NAT between the members is likely: one public address (a LAN
        /// between them) or IPv6 on both (see ``DirectPathPlan``).
        public var withoutNAT: Bool

        public init(localNAT: NATType, detecting: Bool, reflexiveKnown: Bool, peerNAT: NATType, peerReflexiveKnown: Bool,
                    localKeyIsSmaller: Bool, withoutNAT: Bool = false) {
            self.localNAT = localNAT
            self.detecting = detecting
            self.reflexiveKnown = reflexiveKnown
            self.peerNAT = peerNAT
            self.peerReflexiveKnown = peerReflexiveKnown
            self.localKeyIsSmaller = localKeyIsSmaller
            self.withoutNAT = withoutNAT
        }
    }

    /// What Detecting does next.
    public enum Detection: Sendable, Equatable {
        /// Nothing yet: a NAT type or a public endpoint is still being learned.
        case wait
        /// Both NATs known and no direct path possible (symmetric ↔ symmetric): the relay.
        case relay
        /// Both NATs let anyone in (open or full cone): punch at once, no instant to agree on.
        case punchNow
        /// An announced punch: punch when it starts.
        case punchAfter(Duration)
        /// This side (the smaller key) asks the control server for a coordinated punch.
        case requestPunch
        /// A direct path is possible; the announcement (or the detection timeout) is awaited.
        case awaitAnnouncement
    }

    /// Detecting: a pair of symmetric NATs goes to the relay at once (unless a path without NAT is
    /// likely — one public address, IPv6 on both: see ``DirectPathPlan``); any other pair punches at the
    /// instant the control server announces (the member with the smaller key asks for it). Only when
    /// the peer is symmetric does this side wait for its own NAT type (detection decides in about
    /// 1 s; the early relay carries traffic meanwhile). Punches go to the public endpoints of both
    /// WireGuard ports: each side's first STUN answer must be known to the party (the chart's
    /// detection timeout punches anyway). A pair of open or full-cone NATs needs no coordinated
    /// instant: both punch at once, and each goes Direct on the ACK of its own PUNCH.
    public mutating func detect(_ facts: Facts, now: Nanoseconds) -> Detection {
        if facts.localNAT == .unknown && facts.detecting && facts.peerNAT == .symmetric && !facts.withoutNAT { return .wait }
        guard facts.reflexiveKnown || !facts.detecting, facts.peerReflexiveKnown else { return .wait }
        guard DirectPathPlan(local: facts.localNAT, remote: facts.peerNAT, withoutNAT: facts.withoutNAT).directPossible else {
            return .relay
        }
        if Self.admitsAnyone(facts.localNAT), Self.admitsAnyone(facts.peerNAT) { return .punchNow }
        if let announced, announced.at >= now - 1_000_000_000 { return .punchAfter(.nanoseconds(max(0, announced.at - now))) }
        guard facts.localKeyIsSmaller, !requested else { return .awaitAnnouncement }
        requested = true
        return .requestPunch
    }

    /// Open and full-cone NATs let in datagrams from anyone to the public endpoint.
    public static func admitsAnyone(_ nat: NATType) -> Bool { nat == .open || nat == .fullCone }

    /// How an attempt's first burst starts its session.
    public struct Start: Sendable, Equatable {
        public var session: UInt64
        public var coordinated: Bool
        /// Ask the control server to bring the peer in (the session is this side's own).
        public var requestPunch: Bool
    }

    /// Punching entered for a round's first attempt: the announced session when its instant is now,
    /// else `fresh` (a random session), asking the control server to bring the peer in unless both
    /// NATs let anyone in.
    public mutating func start(bothReachable: Bool, now: Nanoseconds, fresh: UInt64) -> Start {
        requested = false
        defer { announced = nil }
        if let announced, abs(announced.at - now) < 2_000_000_000 {
            begin(session: announced.session, coordinated: true)
            return Start(session: announced.session, coordinated: true, requestPunch: false)
        }
        begin(session: fresh, coordinated: false)
        return Start(session: fresh, coordinated: false, requestPunch: !bothReachable)
    }

    /// An attempt uses `session`.
    public mutating func begin(session: UInt64, coordinated: Bool) {
        self.session = session
        sessionCoordinated = coordinated
    }

    /// What an announcement makes the connection do, by its state.
    public enum Joining: Sendable, Equatable {
        case none
        /// Detecting: decide again (the announcement may be what it waited for).
        case detect
        /// Punching: join the announced punch at its instant, with a whole burst.
        case join(session: UInt64, after: Duration)
        /// Keepalive (the peer lost its path, or upgrades from a relay) or Relaying without a relay:
        /// the chart event that takes the connection to punching, when the punch starts.
        case fire(PeerEvent, after: Duration)
    }

    /// The control server announced a punch starting at `startMillis` (its wall clock). The start
    /// is at most ``maxLead`` ahead (a start further off, or past, is now).
    public mutating func announce(startMillis: UInt64, state: PeerState, pinned: Bool, hasRelay: Bool, wall: Int64,
                                  now: Nanoseconds) -> Joining {
        let current = UInt64(clamping: wall)
        let wait = startMillis > current ? Int64(min(UInt64(Self.maxLead), startMillis - current)) : 0
        announced = Announcement(session: startMillis, at: now + wait * 1_000_000)
        switch state {
        case .detecting:
            return .detect
        case .punching where !pinned && isReplaced(byPunchAt: startMillis):
            // The attempt's own ticks may all have gone (a single PUNCH per candidate lost under loss
            // was the whole round): a whole burst from the announced instant.
            announced = nil
            begin(session: startMillis, coordinated: true)
            return .join(session: startMillis, after: .milliseconds(wait))
        case .keepalive:
            return .fire(.endpointChanged, after: .milliseconds(wait))
        case .relaying where !hasRelay:
            // Waiting for a relay that has not come: the relay timeout's edge, taken early.
            return .fire(.relayTimeout, after: .milliseconds(wait))
        default:
            return .none
        }
    }

    /// Whether a punch announced to start at `startMillis` replaces the session under way. One this
    /// side made up (punching on its own, the announcement lost) always is. An announced one is
    /// replaced by a later punch only: the server gives both sides' requests within its join window
    /// the same punch, so a later start is a new punch the peer is in (its announcement of ours was
    /// lost, or ours timed out first). The same punch announced again is not restarted: that
    /// dropped the answers to the running one, and under load pairs never pinned.
    public func isReplaced(byPunchAt startMillis: UInt64) -> Bool {
        guard sessionCoordinated, let session else { return true }
        return startMillis > session
    }
}
