import Net

/// One change of the peer's WireGuard peer, as the connection decides it. The executor makes a
/// transition's steps, in order, as one device change.
public enum WireGuardStep: Sendable, Equatable {
    /// Remove the peer: added again next, it is a new WireGuard peer, with no handshake held back
    /// and counters from 0.
    case remove
    /// Add the peer, or change it, with `endpoint` and the member's allowed IPs.
    case point(Endpoint)
    /// Change only the endpoint of the peer WireGuard has.
    case setEndpoint(Endpoint)
    /// Persistent keepalive from 0 to its interval: WireGuard sends a keepalive at once, or starts a
    /// handshake when it has no session with the peer.
    case kick
    /// One datagram of the agent's own through the tunnel to the peer's overlay address (the discard
    /// port): data, which the peer's WireGuard answers within 10 s (KEEPALIVE_TIMEOUT) with a
    /// keepalive when it sends nothing else, and its kernel often at once (port unreachable).
    case probe
}
