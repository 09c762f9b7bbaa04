/// A token bucket: `burst` tokens at once, `perSecond` on average, refilled continuously.
public struct TokenBucket: Sendable {
    public private(set) var tokens: Double
    private var at: Nanoseconds

    /// A full bucket at `now` (monotonic).
    public init(burst: Double, now: Nanoseconds) {
        tokens = burst
        at = now
    }

    /// The tokens there are at `now`.
    public func available(now: Nanoseconds, perSecond: Double, burst: Double) -> Double {
        min(burst, tokens + Double(max(0, now - at)) / 1e9 * perSecond)
    }

    /// Takes one token at `now` if there is one.
    public mutating func take(now: Nanoseconds, perSecond: Double, burst: Double) -> Bool {
        take(upTo: 1, now: now, perSecond: perSecond, burst: burst) == 1
    }

    /// Takes as many whole tokens as there are at `now`, `count` at most; returns how many.
    public mutating func take(upTo count: Int, now: Nanoseconds, perSecond: Double, burst: Double) -> Int {
        tokens = available(now: now, perSecond: perSecond, burst: burst)
        at = now
        let taken = max(0, min(count, Int(tokens)))
        tokens -= Double(taken)
        return taken
    }
}
