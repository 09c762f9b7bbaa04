/// Every timeout of the peer chart. Defaults: the seed's punch timing (5 packets 100 ms apart,
/// 2 s ACK timeout) and WireGuard's (25 s persistent keepalive, a handshake older than 180 s —
/// REJECT_AFTER_TIME — is stale).
public struct PeerTimings: Sendable, Equatable {
    /// Ask the control server again when no candidates came within this time.
    public var discoveryRetry: Duration = .seconds(10)
    /// Give up on NAT detection and punch anyway after this time.
    public var detection: Duration = .seconds(3)
    /// Packets per punch burst.
    public var punchPackets: Int = 5
    /// Time between two packets of a burst.
    public var punchInterval: Duration = .milliseconds(100)
    /// How long to wait for an ACK after the last packet of a burst.
    public var punchAckTimeout: Duration = .seconds(2)
    /// Punch bursts per attempt before falling back to the relay.
    public var punchAttempts: Int = 2
    /// How long a new direct path may take to show a WireGuard handshake.
    public var directConfirm: Duration = .seconds(10)
    /// How long a relay allocation may take to show a WireGuard handshake.
    public var relayConfirm: Duration = .seconds(15)
    /// How often WireGuard's handshake is read while waiting for one.
    public var confirmPoll: Duration = .seconds(1)
    /// How often WireGuard's handshake is read on a working tunnel.
    public var livenessPoll: Duration = .seconds(10)
    /// WireGuard persistent keepalive interval.
    public var persistentKeepalive: Duration = .seconds(25)
    /// A handshake older than this means the path is gone.
    public var staleHandshake: Duration = .seconds(180)
    /// First wait before trying to upgrade a relayed path to a direct one; doubles per failure.
    public var upgradeBase: Duration = .seconds(30)
    /// Longest wait between two upgrade attempts.
    public var upgradeMax: Duration = .seconds(600)

    public init() {}

    /// How long a punch attempt lasts: the burst, then the ACK timeout.
    public var punchAttempt: Duration {
        punchInterval * (punchPackets - 1) + punchAckTimeout
    }

    /// Silence after which a path counts as gone: three persistent keepalives missed.
    public var silenceLimit: Duration { persistentKeepalive * 3 }

    /// The wait before upgrade attempt `n` (0-based): `upgradeBase · 2ⁿ`, at most `upgradeMax`.
    public func upgradeDelay(attempt: Int) -> Duration {
        var delay = upgradeBase
        for _ in 0..<min(attempt, 32) where delay < upgradeMax { delay = delay * 2 }
        return min(delay, upgradeMax)
    }
}
