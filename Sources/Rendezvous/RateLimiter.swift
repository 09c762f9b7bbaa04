import Net

/// Per-source token buckets in a bounded table: each source may send `burst` messages at once and
/// `perSecond` on average. When the table is full, buckets idle long enough to be full again are
/// evicted; if none is, the new source is refused (and the caller counts it).
public struct RateLimiter: Sendable {
    public let perSecond: Double
    public let burst: Double
    public let capacity: Int
    private var buckets: [IPAddress: (tokens: Double, at: Int64)] = [:]

    public init(perSecond: Double, burst: Double, capacity: Int) {
        self.perSecond = perSecond
        self.burst = burst
        self.capacity = capacity
    }

    public var count: Int { buckets.count }

    /// Whether `source` may send one more message at `now` (monotonic ns).
    public mutating func allow(_ source: IPAddress, now: Int64) -> Bool {
        if var bucket = buckets[source] {
            bucket.tokens = min(burst, bucket.tokens + Double(now - bucket.at) / 1e9 * perSecond)
            bucket.at = now
            guard bucket.tokens >= 1 else { buckets[source] = bucket; return false }
            bucket.tokens -= 1
            buckets[source] = bucket
            return true
        }
        if buckets.count >= capacity {
            let refill = Int64(burst / perSecond * 1e9)
            buckets = buckets.filter { now - $0.value.at < refill }
            guard buckets.count < capacity else { return false }
        }
        buckets[source] = (burst - 1, now)
        return true
    }
}
