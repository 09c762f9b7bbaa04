import Net
import Time

/// Something a ``PeerExecutor`` did or saw for one peer that the I/O logs (the agent) or traces
/// (the simulation).
public enum PeerNote: Sendable, Equatable {
    /// Detecting asked the control server for a coordinated punch.
    case punchRequested
    /// A punch session started toward the peer's candidates and the endpoints learned from it.
    case punchSession(session: UInt64, coordinated: Bool, candidates: Int, learned: Int)
    /// The control server announced a coordinated punch, received in `state`.
    case punchAnnounced(state: PeerState, session: UInt64)
    /// The larger key's turn found no handshake yet: the peer is added afresh.
    case addedAfresh
    /// WireGuard followed a late packet to the relay; the direct endpoint is set again.
    case roamedToRelay(relay: Endpoint?, direct: Endpoint)
    /// Direct without confirmation asked for a handshake, at that second in the state.
    case handshakeAsked(second: Int64)
    /// Relayed, WireGuard moved to a direct endpoint of the peer's: Direct takes it.
    case directFound(Endpoint)
    /// A probe went unanswered: the path is gone.
    case pathLost(silence: Duration, handshakeAge: Duration?)
    /// The pair's relay allocation was given back.
    case relayReleased(service: Endpoint)
    /// A relay granted an allocation for the pair.
    case relayAllocated(service: Endpoint, endpoint: Endpoint)
    /// A relay did not grant one (refused, or no answer).
    case relayRefused(service: Endpoint)
    /// The peer's public endpoint changed in its record.
    case endpointChanged
    /// A member whose key makes no pair key was not made a peer.
    case unusableKey
}
