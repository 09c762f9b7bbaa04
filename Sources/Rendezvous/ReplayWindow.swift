/// Replay protection for one sender: a message is accepted once, and only while its timestamp is
/// within ``skewMillis`` of the receiver's clock. The messages seen within twice that are kept (at
/// most ``capacity``: a sender exceeding that is refused until old ones age out) — in a set for the
/// lookup and in arrival order for the expiry, so a check costs O(1) however busy the sender is.
public struct ReplayWindow: Sendable {
    public static let skewMillis: UInt64 = 30_000
    /// Enough for a party of hundreds: a member of 50 hears about 200 messages from the server in
    /// its first seconds (pushes, punch announcements, relay offers), and the server's rate limit
    /// (50 a second) allows 3,000 in the window.
    public static let capacity = 4096

    private struct Seen: Hashable, Sendable {
        let timestamp: UInt64
        let nonce: UInt64
    }

    private var seen: Set<Seen> = []
    private var arrivals: [Seen] = []
    private var oldest = 0

    public init() {}

    public enum Verdict: Equatable, Sendable { case fresh, replayed, expired }

    /// Checks the message `(timestamp, nonce)` at `now` (both ms since 1970) and remembers it when fresh.
    public mutating func check(timestamp: UInt64, nonce: UInt64, now: UInt64) -> Verdict {
        let distance = timestamp > now ? timestamp - now : now - timestamp
        guard distance <= Self.skewMillis else { return .expired }
        let horizon = now > 2 * Self.skewMillis ? now - 2 * Self.skewMillis : 0
        while oldest < arrivals.count, arrivals[oldest].timestamp < horizon {
            seen.remove(arrivals[oldest])
            oldest += 1
        }
        if oldest > 256, oldest * 2 > arrivals.count {
            arrivals.removeFirst(oldest)
            oldest = 0
        }
        let message = Seen(timestamp: timestamp, nonce: nonce)
        guard !seen.contains(message), seen.count < Self.capacity else { return .replayed }
        seen.insert(message)
        arrivals.append(message)
        return .fresh
    }
}
