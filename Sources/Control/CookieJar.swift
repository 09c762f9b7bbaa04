import Net
import Rendezvous

/// The cookies a control server under load asks strangers to echo: BLAKE2b-128 of the source
/// address and port under a random secret that changes every two minutes (the one before stays
/// valid, so a cookie lives two to four minutes). Stateless: checking one costs a hash, and nothing
/// is stored per source, so spoofed sources — which never see their cookie — cost no state.
struct CookieJar {
    private var current: [UInt8]
    private var previous: [UInt8]
    private var rotatedAt: Int64
    static let lifetime: Int64 = 120_000_000_000

    init(now: Int64) {
        current = Crypto.random(32)
        previous = Crypto.random(32)
        rotatedAt = now
    }

    /// The cookie of `source` at `now` (monotonic ns).
    mutating func cookie(for source: Endpoint, now: Int64) -> [UInt8] {
        rotate(now)
        return Self.cookie(source, current)
    }

    /// Whether `cookie` is `source`'s, under the current secret or the one before.
    mutating func isValid(_ cookie: [UInt8], for source: Endpoint, now: Int64) -> Bool {
        rotate(now)
        return Crypto.equal(cookie, Self.cookie(source, current)) || Crypto.equal(cookie, Self.cookie(source, previous))
    }

    private mutating func rotate(_ now: Int64) {
        guard now - rotatedAt >= Self.lifetime else { return }
        previous = now - rotatedAt >= 2 * Self.lifetime ? Crypto.random(32) : current
        current = Crypto.random(32)
        rotatedAt = now
    }

    private static func cookie(_ source: Endpoint, _ secret: [UInt8]) -> [UInt8] {
        var input = source.address.bytes
        input.append(UInt8(source.port >> 8))
        input.append(UInt8(truncatingIfNeeded: source.port))
        return Crypto.hash(input, key: secret, count: ControlNotice.cookieCount)
    }
}
