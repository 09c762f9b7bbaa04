import Net
import Rendezvous
import Time

/// One peer connection's protocol state beside its chart machine, and every decision that depends
/// on the machine's state: the agent asks, and carries out the answer. Pure: no sockets, no clock
/// (times come in as arguments), so each rule is tested without root.
public struct PeerConnection: Sendable, Equatable {
    /// How the pair agrees on punches.
    public var coordination = PunchCoordination()
    /// The relay allocation held or asked for.
    public var relayUse = RelayUse()
    /// The endpoint WireGuard was last pointed at, and what confirms it; `nil` while none is chosen.
    public var path: PathProbe?

    public init() {}

    // MARK: Punching

    /// Detecting decides (``PunchCoordination/detect(_:now:)``); in any other state nothing is decided.
    public mutating func detect(_ facts: PunchCoordination.Facts, in state: PeerState, now: Nanoseconds) -> PunchCoordination.Detection {
        state == .detecting ? coordination.detect(facts, now: now) : .wait
    }

    /// How an attempt starts.
    public struct Attempt: Sendable, Equatable {
        /// The round's first attempt starts a session.
        public var start: PunchCoordination.Start?
        /// A later attempt of port-restricted ↔ symmetric sprays fresh guesses at the symmetric side's fan.
        public var guessAgain: Bool
    }

    /// Punching entered for attempt `number` of the round (1-based): the first starts a session
    /// (``PunchCoordination/start(bothReachable:now:fresh:)``), later ones guess ports again.
    public mutating func attempt(_ number: Int, bothReachable: Bool, now: Nanoseconds, fresh: UInt64) -> Attempt {
        guard number <= 1 else { return Attempt(start: nil, guessAgain: true) }
        return Attempt(start: coordination.start(bothReachable: bothReachable, now: now, fresh: fresh), guessAgain: false)
    }

    // MARK: Reading WireGuard

    /// How a read of WireGuard is done and used in a state.
    public struct ReadPlan: Sendable, Equatable {
        /// How old a cached read of the device may be: a working tunnel's tick tolerates 2 s (silence
        /// counts in tens of seconds); a path waiting for confirmation wants a fresh one.
        public var maxAge: Duration
        /// Whether WireGuard is kept on the direct endpoint (see ``PathProbe/drift(_:isRelay:working:)``).
        public var keepsDirect: Bool
        /// Whether the path works already, so that WireGuard moving elsewhere (a NAT rebinding) is followed.
        public var working: Bool
        /// Whether an unconfirmed path asks for a handshake (see ``PathProbe/asksHandshake(atSecond:localKeyIsSmaller:)``).
        public var asksHandshake: Bool
    }

    /// The read plan in `state`, on the path the context says the tunnel uses.
    public static func readPlan(in state: PeerState, path: PeerContext.Path) -> ReadPlan {
        ReadPlan(maxAge: state == .keepalive ? .seconds(2) : .milliseconds(200),
                 keepsDirect: state == .direct || state == .keepalive && path == .direct,
                 working: state == .keepalive,
                 asksHandshake: state == .direct)
    }

    // MARK: What changes around the connection

    /// What the connection does when something it depends on changed.
    public enum Reaction: Sendable, Equatable {
        case none
        /// Fire a chart event.
        case fire(PeerEvent)
        /// Detecting: decide again (``PunchCoordination/detect(_:now:)``).
        case decide
        /// Punching: punch the peer's candidates learned meanwhile too, spray or fan for the
        /// port-restricted ↔ symmetric pair, and burst again.
        case punchAgain
        /// Punching: burst again, to the peer's candidates learned meanwhile too.
        case punchCandidates
    }

    /// This side's NAT type or public endpoint became known.
    public static func natLearned(in state: PeerState) -> Reaction {
        switch state {
        case .detecting: .decide
        case .punching: .punchAgain
        default: .none
        }
    }

    /// The first STUN answer (the public endpoint, before the NAT type): only Detecting waits for it.
    public static func publicEndpointLearned(in state: PeerState) -> Reaction {
        state == .detecting ? .decide : .none
    }

    /// The control server sent the member's record again, changed from `old` to `new`.
    public static func recordChanged(from old: MemberRecord, to new: MemberRecord, in state: PeerState) -> Reaction {
        switch state {
        case .discovering where !new.candidates.isEmpty:
            .fire(.candidatesKnown)
        case .detecting where old.nat != new.nat || old.candidates != new.candidates:
            .decide
        case .punching where old.nat != new.nat:
            .punchAgain
        case .punching where old.candidates != new.candidates:
            // A candidate learned meanwhile (a port the peer's gateway mapped): punch there too.
            .punchCandidates
        case .keepalive where publicEndpoints(old) != publicEndpoints(new):
            // A new public address or port: the path is gone, punch for the new one.
            .fire(.endpointChanged)
        default:
            .none
        }
    }

    /// Where the member can be reached from outside its own network: every candidate but its local ones.
    public static func publicEndpoints(_ record: MemberRecord) -> Set<Endpoint> {
        Set(record.candidates.filter { $0.kind != .local }.map { $0.endpoint })
    }

    // MARK: Health

    /// Whether the connection has no working tunnel: out of Keepalive, and either no path chosen or
    /// no handshake for WireGuard's session lifetime (180 s). An upgrade attempt over a relay that
    /// carries is not down.
    public static func isDown(in state: PeerState, path: PeerContext.Path, handshakeAge: Int64?) -> Bool {
        state != .keepalive && (path == .none || (handshakeAge ?? .max) > 180)
    }
}
