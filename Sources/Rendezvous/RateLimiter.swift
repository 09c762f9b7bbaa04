import Net
import Time

/// Per-source token buckets in a table of at most `capacity` sources. A new source always gets a
/// bucket: when the table is full, the source that entered it longest ago is evicted, in O(1) (a ring
/// of the sources in the order they entered). A flood of spoofed sources then costs each datagram
/// the same small work and locks nobody out — an evicted source only starts again with a full
/// bucket; what the servers must not do for strangers under load is decided elsewhere (cookies).
/// An IPv6 source is counted by its /64: one host may send from every address of its link's
/// prefix, and per address it would get a fresh bucket with each.
public struct RateLimiter: Sendable {
    public let perSecond: Double
    public let burst: Double
    public let capacity: Int
    private var buckets: [IPAddress: TokenBucket] = [:]
    private var ring: [IPAddress?]
    private var next = 0

    public init(perSecond: Double, burst: Double, capacity: Int) {
        self.perSecond = perSecond
        self.burst = burst
        self.capacity = max(1, capacity)
        ring = [IPAddress?](repeating: nil, count: max(1, capacity))
    }

    public var count: Int { buckets.count }

    /// Whether `source` may send one more message at `now` (monotonic ns).
    public mutating func allow(_ address: IPAddress, now: Int64) -> Bool {
        var source = address
        if case .v6(let v6) = address { source = .v6(IPv6Address(bytes: Array(v6.bytes[..<8]) + [UInt8](repeating: 0, count: 8))!) }
        if buckets[source] != nil { return buckets[source]!.take(now: now, perSecond: perSecond, burst: burst) }
        if let oldest = ring[next] { buckets[oldest] = nil }
        ring[next] = source
        next = next + 1 == capacity ? 0 : next + 1
        var bucket = TokenBucket(burst: burst, now: now)
        let allowed = bucket.take(now: now, perSecond: perSecond, burst: burst)
        buckets[source] = bucket
        return allowed
    }
}
