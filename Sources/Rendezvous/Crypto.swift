import CSodium

/// The libsodium primitives the control protocol and relay tokens use: HMAC-SHA256, BLAKE2b
/// (generic hash) for key derivation, random bytes, constant-time comparison. Nothing hand-rolled.
public enum Crypto {
    /// `sodium_init` once; libsodium may be used from any thread after it.
    public static let ready: Bool = sodium_init() >= 0

    public static let tagCount = Int(crypto_auth_hmacsha256_BYTES)

    /// HMAC-SHA256 of `data` under the 32-byte `key`, written to `tag` (32 bytes).
    public static func authenticate(_ data: UnsafeRawBufferPointer, key: [UInt8], into tag: UnsafeMutableRawBufferPointer) {
        precondition(ready && key.count == Int(crypto_auth_hmacsha256_KEYBYTES) && tag.count >= tagCount)
        _ = crypto_auth_hmacsha256(tag.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                   data.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(data.count), key)
    }

    /// Whether `tag` is the HMAC-SHA256 of `data` under `key` (constant time).
    public static func verify(tag: UnsafeRawBufferPointer, of data: UnsafeRawBufferPointer, key: [UInt8]) -> Bool {
        guard ready, key.count == Int(crypto_auth_hmacsha256_KEYBYTES), tag.count == tagCount else { return false }
        return crypto_auth_hmacsha256_verify(tag.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                             data.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(data.count), key) == 0
    }

    /// BLAKE2b of `input`, `count` bytes (16…64), keyed when `key` is given (16…64 bytes).
    public static func hash(_ input: [UInt8], key: [UInt8]? = nil, count: Int = 32) -> [UInt8] {
        precondition(ready)
        var out = [UInt8](repeating: 0, count: count)
        if let key {
            _ = crypto_generichash(&out, count, input, UInt64(input.count), key, key.count)
        } else {
            _ = crypto_generichash(&out, count, input, UInt64(input.count), nil, 0)
        }
        return out
    }

    public static func random(_ count: Int) -> [UInt8] {
        precondition(ready)
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }

    public static func randomUInt64() -> UInt64 {
        precondition(ready)
        var value: UInt64 = 0
        randombytes_buf(&value, 8)
        return value
    }

    /// Zeroes `bytes` in a way the compiler may not optimise away.
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
    }
}

/// Key derivation: every key of the protocol comes from a secret through keyed BLAKE2b with a
/// distinct label, so the party key, the party id and the relay key never coincide.
public enum Keys {
    /// The HMAC key of a party: BLAKE2b-256("lanrage control v1 party key" ‖ 0 ‖ name) keyed with BLAKE2b-256(secret).
    public static func partyKey(name: String, secret: [UInt8]) -> [UInt8] {
        var inner = Crypto.hash(secret)
        defer { Crypto.wipe(&inner) }
        return Crypto.hash(Array("lanrage control v1 party key".utf8) + [0] + Array(name.utf8), key: inner)
    }

    /// The 64-bit party id carried in every control message: the first 8 bytes of an unkeyed hash of the name.
    public static func partyID(name: String) -> UInt64 {
        let digest = Crypto.hash(Array("lanrage control v1 party id".utf8) + [0] + Array(name.utf8), count: 16)
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The HMAC key of relay tokens and relay load reports, shared by the control server and its relays.
    public static func relayKey(secret: [UInt8]) -> [UInt8] {
        var inner = Crypto.hash(secret)
        defer { Crypto.wipe(&inner) }
        return Crypto.hash(Array("lanrage relay v1 token key".utf8), key: inner)
    }

    /// The key that authenticates a relay's answer to one allocation request: BLAKE2b keyed with the
    /// relay key over a label and the token. The relay derives it from the token it was shown; the
    /// control server derives it when it issues the token and gives it to that member alone, in its
    /// authenticated offer. A third party can then not fake a grant or steer a member to another port.
    public static func relayReplyKey(relayKey: [UInt8], token: [UInt8]) -> [UInt8] {
        Crypto.hash(Array("lanrage relay v1 reply key".utf8) + [0] + token, key: relayKey)
    }

    /// The id of the allocation for a pair of members: the same whichever side asks.
    public static func pairID(party: UInt64, _ a: MemberKey, _ b: MemberKey) -> [UInt8] {
        let (low, high) = a < b ? (a, b) : (b, a)
        var input = Array("lanrage relay v1 pair".utf8)
        ByteWriter.append(party, to: &input)
        return Crypto.hash(input + low.bytes + high.bytes, count: 16)
    }
}
