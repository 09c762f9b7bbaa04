import EventLoop
import Net
import Punch
import Rendezvous
import WireGuard
import Time

/// What the agent keeps for one remote member beside its peer machine: the registry's record, the
/// punch session and relay grant in use, and what WireGuard last said about the peer.
struct PeerLink {
    var record: MemberRecord
    let publicKey: Key
    let pairKey: PairKey
    let machine: MachineID
    /// A coordinated punch the control server announced: the session both sides use, and when
    /// it starts (monotonic).
    var coordinated: (session: UInt64, at: Nanoseconds)?
    /// The session of the punch attempt under way or last made, and whether it came from the
    /// control server's announcement (else the agent made it up, punching on its own).
    var session: UInt64?
    var sessionCoordinated = false
    /// Whether this side asked the control server for a punch it has not started yet.
    var punchRequested = false
    var relay: RelayClient.Grant?
    /// The relay was granted while detecting or punching (the early relay), and Relaying may reuse it.
    var earlyRelay = false
    /// Offers of the last relay answer not tried yet, best first.
    var offers: [RelayOffer] = []
    /// The endpoint WireGuard was last pointed at, and when (wall milliseconds, and the receive
    /// counter then): a handshake or new data from it since confirms the path. Milliseconds: a
    /// handshake through the early relay a moment before the switch, in the same second, proves
    /// nothing about the direct path.
    var endpoint: Endpoint?
    /// WireGuard has not been given `endpoint` yet: the member with the larger key waits for its
    /// turn on a peer without a handshake (see `Agent.pointWireGuard`).
    var endpointDeferred = false
    var endpointSetAt: Int64 = 0
    var receivedAtSet: UInt64 = 0
    /// The receive counter when last read, and when it last grew (monotonic).
    var received: UInt64 = 0
    var receivedChangedAt: Nanoseconds
    /// The WireGuard peer as last read.
    var wireGuard: WireGuard.Peer?
    /// When the machine entered its current state (monotonic).
    var stateSince: Nanoseconds
    /// Carries the peer's WireGuard datagrams through the fan port a punch found open (port-restricted
    /// ↔ symmetric); WireGuard's endpoint is then its loopback socket.
    var forwarder: LocalForwarder?
    /// The member's prefixes WireGuard has as the peer's allowed IPs: what `RoutePolicy` accepted.
    var allowedIPs: [IPPrefix] = []
    /// The routes through the interface this agent added for the peer (and removes with it).
    var routes: [IPPrefix] = []
    /// The member's prefixes `RoutePolicy` refused, with the reason logged.
    var refused: [IPPrefix: RoutePolicy.Reason] = [:]

    init(record: MemberRecord, pairKey: PairKey, machine: MachineID, now: Nanoseconds) {
        self.record = record
        publicKey = Key(bytes: record.key.bytes)!
        self.pairKey = pairKey
        self.machine = machine
        receivedChangedAt = now
        stateSince = now
    }

    /// Whether a punch the control server announced, starting at `startMillis`, replaces the session
    /// under way. One this side made up (punching on its own, the announcement lost) always is. An
    /// announced one is replaced by a later punch only: the server gives both sides' requests within
    /// its join window the same punch, so a later start is a new punch the peer is in (its
    /// announcement of ours was lost, or ours timed out first). The same punch announced again is not
    /// restarted: that dropped the answers to the running one, and under load pairs never pinned.
    func isReplaced(byPunchAt startMillis: UInt64) -> Bool {
        guard sessionCoordinated, let session else { return true }
        return startMillis > session
    }

    /// Where to punch: every candidate the peer announced or the server observed, no duplicates.
    var candidates: [Endpoint] {
        var seen: [Endpoint] = []
        for candidate in record.candidates where !seen.contains(candidate.endpoint) { seen.append(candidate.endpoint) }
        return seen
    }

    /// The peer's WireGuard port as the internet sees it (its first STUN answer), for a peer whose
    /// NAT lets anyone in.
    var reachable: Endpoint? { record.candidates.first { $0.kind == .reflexive }?.endpoint }

    /// The peer's public address as the control server sees it.
    var observed: Endpoint? { record.candidates.first { $0.kind == .observed }?.endpoint }
}
