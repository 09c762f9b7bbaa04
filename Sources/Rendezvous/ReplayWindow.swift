/// Replay protection for one sender: a message is accepted once, and only while its timestamp is
/// within ``skewMillis`` of the receiver's clock. The nonces seen within that window are kept (at
/// most ``capacity``; a sender exceeding that is refused until old ones age out).
public struct ReplayWindow: Sendable {
    public static let skewMillis: UInt64 = 30_000
    public static let capacity = 64

    private var seen: [(timestamp: UInt64, nonce: UInt64)] = []

    public init() {}

    public enum Verdict: Equatable, Sendable { case fresh, replayed, expired }

    /// Checks the message `(timestamp, nonce)` at `now` (both ms since 1970) and remembers it when fresh.
    public mutating func check(timestamp: UInt64, nonce: UInt64, now: UInt64) -> Verdict {
        let distance = timestamp > now ? timestamp - now : now - timestamp
        guard distance <= Self.skewMillis else { return .expired }
        let oldest = now > 2 * Self.skewMillis ? now - 2 * Self.skewMillis : 0
        seen.removeAll { $0.timestamp < oldest }
        if seen.contains(where: { $0.nonce == nonce && $0.timestamp == timestamp }) { return .replayed }
        guard seen.count < Self.capacity else { return .replayed }
        seen.append((timestamp, nonce))
        return .fresh
    }
}
