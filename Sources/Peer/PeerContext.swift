/// The extended state of one peer machine.
public struct PeerContext: Sendable, Equatable {
    /// Which way WireGuard's traffic to the peer goes.
    public enum Path: String, Sendable {
        case none, direct, relayed
    }

    public var timings: PeerTimings
    /// Whether the two NATs allow a direct path (from the compatibility table); `nil` until known.
    public var directPossible: Bool?
    /// Whether both NATs let in a datagram from anyone (open or full cone): no filter to open, so
    /// the punch starts at once, with no instant agreed through the control server.
    public var bothReachable = false
    /// Punch attempts made in the current round (Keepalive and Relaying end a round).
    public var punchBursts = 0
    /// Failed upgrade attempts since the path became relayed; sets the upgrade backoff.
    public var upgradeFailures = 0
    /// Age of WireGuard's last handshake with the peer when last read; `nil` for none yet.
    public var handshakeAge: Duration?
    /// Time since WireGuard last received anything from the peer (its receive counter grew), when
    /// last read; `nil` when unknown. The peer's persistent keepalives keep it short on a live path.
    public var receiveSilence: Duration?
    /// Whether the last read of WireGuard showed the current path working since it was set
    /// (a handshake, or data received, over it).
    public var pathConfirmed = false
    /// The path the tunnel uses now.
    public var path: Path = .none

    public init(timings: PeerTimings = PeerTimings()) {
        self.timings = timings
    }

    /// No handshake within the stale limit (WireGuard's REJECT_AFTER_TIME, 180 s by default), or
    /// nothing received for three keepalive intervals: the path is gone.
    public var handshakeStale: Bool {
        guard let handshakeAge else { return true }
        return handshakeAge >= timings.staleHandshake || (receiveSilence ?? .zero) >= timings.silenceLimit
    }
}
