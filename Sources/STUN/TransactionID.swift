/// A STUN transaction id: 96 random bits (RFC 8489 §5), compared and hashed as two integers.
public struct TransactionID: Hashable, Sendable, CustomStringConvertible {
    /// The first four bytes, big-endian.
    public var high: UInt32
    /// The last eight bytes, big-endian.
    public var low: UInt64

    public init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Twelve bytes in network order; `nil` for another count.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        high = bytes[0..<4].reduce(0) { $0 << 8 | UInt32($1) }
        low = bytes[4..<12].reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A fresh id from the system's cryptographically secure generator.
    public static func random() -> TransactionID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    public static func random(using generator: inout some RandomNumberGenerator) -> TransactionID {
        TransactionID(high: UInt32.random(in: .min ... .max, using: &generator), low: generator.next())
    }

    /// The twelve bytes in network order.
    public var bytes: [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: high >> (24 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
    }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
