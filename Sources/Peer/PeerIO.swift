import EventLoop
import Net
import Punch
import Rendezvous
import STUN
import Time

/// What a ``PeerExecutor`` turns its connections' decisions into: the agent's sockets, WireGuard,
/// control client and relays, or the simulation's models of them. Nothing here decides; every
/// member is one kind of I/O, or a fact about this side the decisions read.
public protocol PeerIO: AnyObject {
    /// What the I/O keeps for one peer beside its connection.
    associatedtype IOState

    // MARK: Members

    /// A member becomes a peer: the I/O's state for it.
    func meet(_ record: MemberRecord) -> IOState
    /// The peer's link is stored: WireGuard learns the peer (no endpoint yet).
    func joined(_ id: MachineID)
    /// A known peer's record changed (`old` is the one before).
    func recordChanged(_ id: MachineID, from old: MemberRecord)
    /// The peer is gone: its WireGuard peer, punch session and what the I/O held for it go.
    func remove(_ id: MachineID)

    // MARK: This side

    /// The NAT type the party is told.
    var announcedNAT: NATType { get }
    /// Whether NAT detection is running.
    var isDetecting: Bool { get }
    /// Whether this side's public endpoint of the WireGuard port is known.
    var reflexiveKnown: Bool { get }
    /// When the last NAT detection started; `nil` before the first.
    var detectionStartedAt: Nanoseconds? { get }
    /// Starts NAT detection again.
    func rediscover()
    /// Whether a path without NAT to the peer is likely (``DirectPathPlan``).
    func reachableWithoutNAT(_ link: PeerLink<IOState>) -> Bool
    /// Whether relays may be used at all.
    var relaysEnabled: Bool { get }
    /// The relays to try first, in order.
    var preferredRelays: [Endpoint] { get }
    /// A fresh random number (a punch session's).
    func randomUInt64() -> UInt64

    // MARK: Punching

    /// Starts a punch session toward the peer, whose public address as the control server saw it is
    /// `observed` (the fan and the spray may go there).
    func punch(_ id: MachineID, _ session: PunchSession, observed: IPAddress?)
    /// The endpoints the peer's punch session learned (punched by its next punch session too).
    func learned(_ id: MachineID) -> [Endpoint]
    /// Where the punch pinned the peer, if it did.
    func pinned(_ id: MachineID) -> Endpoint?
    /// One burst of punches.
    func burst(_ id: MachineID)
    /// The peer's candidates learned meanwhile join the session.
    func addCandidates(_ candidates: [Endpoint], for id: MachineID)
    /// Port-restricted side: PUNCHes from the WireGuard port at ``DirectPathPlan/sprayGuesses``
    /// random ports of the symmetric peer's public `address`.
    func spray(_ id: MachineID, at address: IPAddress)
    /// Symmetric side: punches from a fan of extra ports toward the peer's public endpoint `target`.
    func openFan(_ id: MachineID, toward target: Endpoint)
    /// Where the peer's open fan punches toward; `nil` when none is open.
    func fanTarget(_ id: MachineID) -> Endpoint?
    /// The punch ended, or its fan is not wanted any more: the fan ports close (a pin's stays,
    /// for its forwarder).
    func endPunch(_ id: MachineID)
    /// The endpoint WireGuard sends to for the pinned peer: `pinned`, or the local end of a fan
    /// port's forwarder; `nil` when that could not be set up.
    func directEndpoint(_ id: MachineID, pinned: Endpoint) -> Endpoint?

    // MARK: Servers

    /// Asks the control server for a coordinated punch with `key`'s member.
    func requestPunch(with key: MemberKey)
    /// Asks the control server for relay offers for the pair with `key`'s member.
    func requestRelay(with key: MemberKey)
    /// Asks `offer`'s relay for the pair's allocation; `granted` runs with it, or `nil` when refused
    /// or unanswered.
    func allocate(_ offer: RelayOffer, _ granted: @escaping (RelayGrant?) -> Void)
    /// Latches the WireGuard port on the allocation.
    func latch(_ grant: RelayGrant)
    /// Gives the allocation back.
    func release(_ grant: RelayGrant)

    // MARK: WireGuard

    /// The peer's WireGuard peer, read no longer than `maxAge` ago (`.zero`: now); `nil` when not there.
    func read(_ id: MachineID, maxAge: Duration) -> WireGuardReading?
    /// Makes the steps, in order.
    func apply(_ steps: [WireGuardStep], to id: MachineID)
    /// WireGuard was pointed at `endpoint` (the steps are made): the routes follow.
    func pointed(_ id: MachineID, at endpoint: Endpoint)
    /// Whether the peer's path goes through a fan port's forwarder.
    func forwarded(_ id: MachineID) -> Bool

    // MARK: Time and traces

    /// Runs `body` after `delay`.
    func after(_ delay: Duration, _ body: @escaping () -> Void)
    /// Logs or traces what the executor did for `key`'s member.
    func note(_ note: PeerNote, for key: MemberKey)
    /// A transition of the peer's machine (internal ones too), before a closed machine's link goes.
    func transitioned(_ record: TransitionRecord<PeerChart>, of link: PeerLink<IOState>)
}
