/// SHA-1 (FIPS 180-4) and HMAC-SHA1 (RFC 2104), only for STUN's MESSAGE-INTEGRITY (RFC 8489 §14.5).
/// SHA-1 is not used here for anything that needs collision resistance; HMAC-SHA1 remains sound.
/// Verified against the FIPS 180 examples, RFC 2202 and RFC 5769 in the tests.
public struct SHA1: Sendable {
    private var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
    private var block = [UInt8](repeating: 0, count: 64)
    private var blockCount = 0
    private var totalBytes: UInt64 = 0

    public init() {}

    /// The digest of `bytes` in one call.
    public static func hash(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var sha = SHA1()
        sha.update(bytes)
        return sha.finalize()
    }

    public mutating func update(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            block[blockCount] = byte
            blockCount += 1
            totalBytes &+= 1
            if blockCount == 64 { compress(); blockCount = 0 }
        }
    }

    /// Feeds raw bytes (fast path used by HMAC and the codec).
    public mutating func update(buffer: UnsafeRawBufferPointer) {
        for byte in buffer {
            block[blockCount] = byte
            blockCount += 1
            if blockCount == 64 { compress(); blockCount = 0 }
        }
        totalBytes &+= UInt64(buffer.count)
    }

    public mutating func finalize() -> [UInt8] {
        let bitLength = totalBytes &* 8
        var padding: [UInt8] = [0x80]
        let afterOne = (blockCount + 1) % 64
        let zeros = afterOne <= 56 ? 56 - afterOne : 120 - afterOne
        padding += [UInt8](repeating: 0, count: zeros)
        for shift in stride(from: 56, through: 0, by: -8) { padding.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        padding.withUnsafeBytes { raw in
            for byte in raw {
                block[blockCount] = byte
                blockCount += 1
                if blockCount == 64 { compress(); blockCount = 0 }
            }
        }
        var digest: [UInt8] = []
        digest.reserveCapacity(20)
        for word in [h.0, h.1, h.2, h.3, h.4] {
            digest += [UInt8(word >> 24), UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 8), UInt8(truncatingIfNeeded: word)]
        }
        return digest
    }

    private mutating func compress() {
        var state = h
        block.withUnsafeBufferPointer { block in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
                for i in 0..<16 {
                    let b0 = UInt32(block[4 * i]) << 24, b1 = UInt32(block[4 * i + 1]) << 16
                    let b2 = UInt32(block[4 * i + 2]) << 8, b3 = UInt32(block[4 * i + 3])
                    w[i] = b0 | b1 | b2 | b3
                }
                for i in 16..<80 {
                    let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                    w[i] = x << 1 | x >> 31
                }
                var (a, b, c, d, e) = state
                for i in 0..<80 {
                    let f: UInt32, k: UInt32
                    switch i {
                    case 0..<20: f = (b & c) | (~b & d); k = 0x5A82_7999
                    case 20..<40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                    case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                    default: f = b ^ c ^ d; k = 0xCA62_C1D6
                    }
                    let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                    e = d; d = c; c = b << 30 | b >> 2; b = a; a = temp
                }
                state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d, state.4 &+ e)
            }
        }
        h = state
    }
}

/// HMAC-SHA1 (RFC 2104).
public enum HMACSHA1 {
    public static func authenticationCode(key: [UInt8], message: UnsafeRawBufferPointer) -> [UInt8] {
        var key = key
        if key.count > 64 { key = SHA1.hash(key) }
        key += [UInt8](repeating: 0, count: 64 - key.count)
        var inner = SHA1()
        let innerPad = key.map { $0 ^ 0x36 }
        innerPad.withUnsafeBytes { inner.update(buffer: $0) }
        inner.update(buffer: message)
        let innerDigest = inner.finalize()
        var outer = SHA1()
        let outerPad = key.map { $0 ^ 0x5C }
        outerPad.withUnsafeBytes { outer.update(buffer: $0) }
        innerDigest.withUnsafeBytes { outer.update(buffer: $0) }
        return outer.finalize()
    }

    public static func authenticationCode(key: [UInt8], message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { authenticationCode(key: key, message: $0) }
    }
}
