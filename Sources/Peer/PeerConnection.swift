import Net
import Rendezvous
import STUN
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
    /// WireGuard's receive counter as last read, and when it last grew (from the first read).
    public private(set) var received: UInt64 = 0
    public private(set) var receivedAt: Nanoseconds?
    /// The first probe through the tunnel since anything was received, and the first since the
    /// handshake came near the stale limit (``rekeyLead``); `nil` when none is pending.
    public private(set) var probedAt: Nanoseconds?
    public private(set) var agingProbedAt: Nanoseconds?
    /// Relayed, the direct endpoint WireGuard moved to (``Reading/found``), for Direct to take.
    public private(set) var found: Endpoint?

    /// How long a peer may take to answer a probe: WireGuard's KEEPALIVE_TIMEOUT (10 s), and 2 s
    /// for the round trip and a lost first answer's kernel-side retry.
    public static let probeAnswer: Duration = .seconds(12)
    /// How long before the stale limit a session is probed. A responder whose confirming packet was
    /// lost keeps the old session's handshake, and with no traffic nothing renews it before it turns
    /// stale; the peer's answer to a probe, over its new session, does. An initiator that receives
    /// data over a session within 15 s of WireGuard's REJECT_AFTER_TIME starts a new handshake
    /// (REJECT_AFTER_TIME − KEEPALIVE_TIMEOUT − REKEY_TIMEOUT), and one that sends does after
    /// REKEY_AFTER_TIME. 30 s leaves room for a probe or its answer to be lost, and another sent.
    public static let rekeyLead: Duration = .seconds(30)

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

    // MARK: Pointing WireGuard

    /// WireGuard is to send to `endpoint` (the pinned one, a fan port's forwarder, or the relay's),
    /// `before` being its peer as read just now (`nil`: not there). A fresh peer of the member with
    /// the larger key is left without the endpoint until its turn (``takeTurn(_:)``); the smaller
    /// key's side adds a fresh peer afresh: a packet routed to it before may have made WireGuard
    /// start a handshake that could not leave, and hold back every handshake for 5 s
    /// (REKEY_TIMEOUT). It has no session to lose.
    public mutating func point(at endpoint: Endpoint, before: WireGuardReading?, wall: Int64, localKeyIsSmaller: Bool) -> [WireGuardStep] {
        let fresh = PathProbe.isFresh(before)
        let deferred = PathProbe.holdsBack(fresh: fresh, localKeyIsSmaller: localKeyIsSmaller)
        path = PathProbe.chosen(endpoint, at: wall, before: before, previous: path?.endpoint, deferred: deferred)
        if deferred { return [] }
        return fresh ? [.remove, .point(endpoint)] : [.point(endpoint)]
    }

    /// The direct endpoint WireGuard found while relayed, once; a new punch session forgets it.
    public mutating func takeFound() -> Endpoint? {
        defer { found = nil }
        return found
    }

    /// How long the member with the larger key waits for its turn on a new path (``takeTurn(_:)``).
    public static let keepaliveLag: Duration = .milliseconds(300)

    /// When `enableKeepalive` kicks WireGuard: the member with the smaller key at once, the larger
    /// one after ``keepaliveLag`` and its turn. Two handshake initiations crossing each other leave
    /// both sides waiting as responders until a retry 5 s later.
    public static func keepaliveTurn(localKeyIsSmaller: Bool) -> Duration? {
        localKeyIsSmaller ? nil : keepaliveLag
    }

    /// The member with the larger key, when its turn comes, `reading` being its WireGuard peer as read
    /// now. With no handshake yet the smaller key's initiation was lost (or, with an endpoint set
    /// earlier, crossed one this side's own traffic had started, and both sides wait as responders);
    /// WireGuard would retry after 5 s, and holds back any handshake until then: added afresh with
    /// the endpoint, the peer initiates at once. With a handshake, an endpoint held back is set now.
    /// Then the kick.
    public mutating func takeTurn(_ reading: WireGuardReading?) -> [WireGuardStep] {
        guard let chosen = path else { return [.kick] }
        path?.release()
        guard let reading else { return [.kick] }
        if reading.lastHandshake == nil { return [.remove, .point(chosen.endpoint), .kick] }
        if chosen.deferred, reading.endpoint != chosen.endpoint { return [.setEndpoint(chosen.endpoint), .kick] }
        return [.kick]
    }

    /// What one read of WireGuard shows, and what it changes.
    public struct Reading: Sendable, Equatable {
        /// The changes to make.
        public var steps: [WireGuardStep] = []
        /// Whether the path works since it was set (``PathProbe/confirmed(by:wall:stale:)``).
        public var confirmed = false
        /// The age of the last handshake; `nil` for none.
        public var handshakeAge: Duration?
        /// How long WireGuard has received nothing from the peer.
        public var silence: Duration = .zero
        /// Whether the path is gone (``PeerContext/pathLost``).
        public var lost = false
        /// Relayed (in Relaying, or in Keepalive), WireGuard left the relay it was pointed at for
        /// this endpoint, not a relay's, on an authenticated packet: the peer's pin found the
        /// direct path this side's attempt missed (its answer lost, or the peer's fan port forwards
        /// to WireGuard only, and answers no more punches), and the peer sends that way. Direct
        /// takes it (see ``takeFound()``) and checks it.
        public var found: Endpoint?
    }

    /// What a read is judged by, beside WireGuard's peer.
    public struct ReadFacts: Sendable {
        /// The machine's state.
        public var state: PeerState
        /// The path the tunnel uses.
        public var path: PeerContext.Path
        /// Wall milliseconds now.
        public var wall: Int64
        /// Whole seconds since the state was entered.
        public var secondInState: Int64
        /// Whether this member's key is the smaller of the pair's.
        public var localKeyIsSmaller: Bool
        /// Monotonic time now.
        public var now: Nanoseconds
        /// The chart's timings: the session age past which data received no longer confirms a path
        /// (`staleHandshake`), the keepalive interval, the silence limit.
        public var timings: PeerTimings
        /// The path goes through a fan port's forwarder (its endpoint is not the agent's to keep).
        public var forwarded: Bool
        /// This side sprays at a symmetric peer that fans (see ``PathProbe/drift(_:isRelay:working:peerFans:)``).
        public var peerFans = false

        public init(state: PeerState, path: PeerContext.Path, wall: Int64, now: Nanoseconds, secondInState: Int64,
                    localKeyIsSmaller: Bool, timings: PeerTimings, forwarded: Bool) {
            self.state = state
            self.path = path
            self.wall = wall
            self.now = now
            self.secondInState = secondInState
            self.localKeyIsSmaller = localKeyIsSmaller
            self.timings = timings
            self.forwarded = forwarded
        }
    }

    /// WireGuard's peer was read (`nil`: not there). On the direct path WireGuard stays on it
    /// (``PathProbe/drift(_:isRelay:working:)``): a late packet through the relay that took it back
    /// there is undone at once, a working path follows the peer's own move. Then the path is
    /// confirmed or not; Direct without confirmation asks for a handshake at its seconds
    /// (``PathProbe/asksHandshake(atSecond:localKeyIsSmaller:)``): re-added, the peer initiates at
    /// once, and the answer confirms the path (the other side's too, when it waits as well).
    ///
    /// On a working tunnel, silence for a keepalive interval is probed (``WireGuardStep/probe``):
    /// with no traffic, persistent keepalives may go one way only — a received packet restarts the
    /// receiver's keepalive timer too — and the side that sends them hears nothing for minutes on a
    /// path that works. A handshake nearly stale is probed too (see ``rekeyLead``), and so is none at
    /// all: Keepalive may be entered on the peer's initiation, answered, whose handshake completes
    /// only with the peer's next packet. The path is lost only when nothing came for the silence
    /// limit and the first probe since has had ``probeAnswer`` to be answered, or the handshake is
    /// older than the stale limit or missing and the first probe of that has had ``rekeyLead`` and
    /// ``probeAnswer``.
    public mutating func read(_ reading: WireGuardReading?, _ facts: ReadFacts, isRelay: (Endpoint) -> Bool) -> Reading {
        let plan = Self.readPlan(in: facts.state, path: facts.path)
        var result = Reading()
        let handshakeAge = reading?.lastHandshake.map { PathProbe.handshakeAge($0, wall: facts.wall) }
        // No handshake, or no WireGuard peer at all (removed behind the agent's back), ages too.
        let aging = handshakeAge.map { $0 >= facts.timings.staleHandshake - Self.rekeyLead } ?? true
        if let reading, reading.received != received || receivedAt == nil {
            received = reading.received
            receivedAt = facts.now
            probedAt = nil
        }
        // Data answers a probe of silence; only a new handshake answers one of an aging session.
        if !aging { agingProbedAt = nil }
        result.silence = .nanoseconds(facts.now - (receivedAt ?? facts.now))
        if let reading, plan.keepsDirect, !facts.forwarded, let chosen = path {
            switch chosen.drift(reading, isRelay: isRelay, working: plan.working, peerFans: facts.peerFans) {
            case .none:
                break
            case .follow(let endpoint):
                path?.follow(endpoint)
            case .setBack:
                result.steps.append(.setEndpoint(chosen.endpoint))
                path?.restart(at: facts.wall, received: reading.received)
            }
        }
        let relayed = facts.state == .relaying || facts.state == .keepalive && facts.path == .relayed
        if relayed, let current = reading?.endpoint, let pointed = path?.endpoint, current != pointed, !isRelay(current) {
            result.found = current
            found = current
        }
        if plan.working, result.silence >= facts.timings.persistentKeepalive || aging {
            if reading == nil {
                // Nothing to probe: the verdict below comes when the probe's window has passed.
            } else if reading?.lastHandshake == nil, facts.localKeyIsSmaller, let chosen = path, !chosen.deferred {
                // No handshake yet: two initiations crossed (each side's consumed the other's, and
                // both wait as responders), and data-triggered ones, 5 s apart on each side, may go
                // on crossing. The member with the smaller key adds the peer afresh: it initiates
                // at once, out of step with the other side.
                result.steps += [.remove, .point(chosen.endpoint), .kick]
                path?.restart(at: chosen.setAt, received: 0)
            } else {
                result.steps.append(.probe)
            }
            if probedAt == nil, result.silence >= facts.timings.persistentKeepalive { probedAt = facts.now }
            if agingProbedAt == nil, aging { agingProbedAt = facts.now }
        }
        func unanswered(_ probe: Nanoseconds?, for window: Duration) -> Bool {
            probe.map { Duration.nanoseconds(facts.now - $0) >= window } ?? false
        }
        // An aging session's probes began `rekeyLead` before the limit: WireGuard's own retries
        // past the limit get the probe's window too.
        let old = handshakeAge.map { $0 >= facts.timings.staleHandshake } ?? true
        result.lost = result.silence >= facts.timings.silenceLimit && unanswered(probedAt, for: Self.probeAnswer)
            || old && unanswered(agingProbedAt, for: Self.rekeyLead + Self.probeAnswer)
        if let reading {
            result.handshakeAge = handshakeAge
            result.confirmed = path?.confirmed(by: reading, wall: facts.wall, stale: facts.timings.staleHandshake) ?? false
        }
        if !result.confirmed, plan.asksHandshake, let chosen = path, !chosen.deferred,
           PathProbe.asksHandshake(atSecond: facts.secondInState, localKeyIsSmaller: facts.localKeyIsSmaller) {
            result.steps += [.remove, .point(chosen.endpoint), .kick]
            // A new WireGuard peer counts from 0.
            path?.restart(at: chosen.setAt, received: 0)
        }
        return result
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
        case .keepalive where moved(from: old, to: new):
            // A new public address or port: the path is gone, punch for the new one.
            .fire(.endpointChanged)
        default:
            .none
        }
    }

    /// Whether the member's record says it moved, so that a path to it is gone: it has another
    /// public address, or behind a NAT that keeps one mapping for every destination a public
    /// endpoint it announced is gone (its router mapped the port anew). An endpoint added (the
    /// first STUN answer of a member whose detection had failed) moves nothing. Behind a symmetric
    /// NAT only the address counts: the port it announces is its mapping toward the STUN server,
    /// one of many, and a detection run after that mapping expired gets another, while the
    /// mappings toward its peers (the paths) stay as they were.
    public static func moved(from old: MemberRecord, to new: MemberRecord) -> Bool {
        let before = publicEndpoints(old), after = publicEndpoints(new)
        if Set(before.map { $0.address }) != Set(after.map { $0.address }) { return true }
        guard old.nat != .symmetric, new.nat != .symmetric else { return false }
        return !before.subtracting(after).isEmpty
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
