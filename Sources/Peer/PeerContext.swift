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
    /// Whether the last read found the path gone: nothing received from the peer for the silence
    /// limit, or no handshake for the stale limit, and a probe through the tunnel unanswered (see
    /// ``PeerConnection/read(_:_:isRelay:)``).
    public var pathLost = false
    /// Whether the last read of WireGuard showed the current path working since it was set
    /// (a handshake, or data received, over it).
    public var pathConfirmed = false
    /// The path the tunnel uses now.
    public var path: Path = .none
    /// Whether the confirmation window of Direct or Relaying has ended: the read made at its end
    /// decides (confirmed, or given up), not the polls before it, which leave the last poll
    /// interval unread.
    public var windowOver = false

    public init(timings: PeerTimings = PeerTimings()) {
        self.timings = timings
    }

    /// The path lost (``pathLost``): the path is gone.
    public var handshakeStale: Bool { pathLost }
}

extension PeerContext {
    /// When `natKnown` fires after a decision of Detecting.
    public enum NATKnown: Sendable, Equatable {
        case now
        case after(Duration)
    }

    /// Stores what Detecting decided (``PunchCoordination/detect(_:now:)``) — whether a direct path is
    /// possible, whether both NATs let anyone in — and says when `natKnown` fires: `nil` while the
    /// decision waits (for a NAT, an endpoint, or the announcement of a punch asked for).
    public mutating func decided(_ decision: PunchCoordination.Detection) -> NATKnown? {
        switch decision {
        case .wait:
            return nil
        case .relay:
            directPossible = false
            return .now
        case .punchNow:
            directPossible = true
            bothReachable = true
            return .now
        case .punchAfter(let delay):
            directPossible = true
            return .after(delay)
        case .requestPunch, .awaitAnnouncement:
            directPossible = true
            return nil
        }
    }
}
