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

    /// X25519 of a private and a public key (32 bytes each); nil when the public key is a low-order
    /// point (the result would be all zero: no shared secret).
    public static func sharedSecret(privateKey: [UInt8], publicKey: [UInt8]) -> [UInt8]? {
        precondition(ready)
        guard privateKey.count == 32, publicKey.count == 32 else { return nil }
        var shared = [UInt8](repeating: 0, count: 32)
        guard crypto_scalarmult(&shared, privateKey, publicKey) == 0 else { return nil }
        return shared
    }

    /// The X25519 public key of a private key.
    public static func publicKey(ofPrivate privateKey: [UInt8]) -> [UInt8] {
        precondition(ready && privateKey.count == 32)
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult_base(&out, privateKey)
        return out
    }

    /// Ed25519: the key pair (public 32 bytes, secret 64 bytes) of a 32-byte seed.
    public static func signingKeyPair(seed: [UInt8]) -> (publicKey: [UInt8], secretKey: [UInt8]) {
        precondition(ready && seed.count == Int(crypto_sign_SEEDBYTES))
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var secretKey = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        _ = crypto_sign_seed_keypair(&publicKey, &secretKey, seed)
        return (publicKey, secretKey)
    }

    public static let signatureCount = Int(crypto_sign_BYTES)

    /// Ed25519 signature of `message` under a 64-byte secret key.
    public static func sign(_ message: [UInt8], secretKey: [UInt8]) -> [UInt8] {
        precondition(ready && secretKey.count == Int(crypto_sign_SECRETKEYBYTES))
        var signature = [UInt8](repeating: 0, count: signatureCount)
        _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count), secretKey)
        return signature
    }

    /// Whether `signature` is an Ed25519 signature of `message` by `publicKey` (32 bytes).
    public static func verify(signature: UnsafeRawBufferPointer, of message: UnsafeRawBufferPointer, publicKey: [UInt8]) -> Bool {
        guard ready, signature.count == signatureCount, publicKey.count == Int(crypto_sign_PUBLICKEYBYTES) else { return false }
        return crypto_sign_verify_detached(signature.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                           message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count), publicKey) == 0
    }

    /// Standard base64 with padding (certificates and authority keys in files and configurations).
    public static func base64(_ bytes: [UInt8]) -> String {
        precondition(ready)
        let capacity = (bytes.count + 2) / 3 * 4 + 1
        var output = [CChar](repeating: 0, count: capacity)
        _ = output.withUnsafeMutableBufferPointer { out in
            sodium_bin2base64(out.baseAddress!, out.count, bytes, bytes.count, sodium_base64_VARIANT_ORIGINAL)
        }
        return String(decoding: output[0..<(capacity - 1)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The bytes of standard base64 text (padding required, surrounding spaces and newlines
    /// ignored), at most `limit` bytes; nil for anything else.
    public static func bytes(base64 text: some StringProtocol, limit: Int = 4096) -> [UInt8]? {
        guard ready else { return nil }
        let utf8 = Array(text.utf8.filter { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 })
        guard !utf8.isEmpty, utf8.count % 4 == 0, utf8.count / 4 * 3 <= limit + 2 else { return nil }
        var output = [UInt8](repeating: 0, count: utf8.count / 4 * 3)
        var length = 0
        let status = utf8.withUnsafeBufferPointer { input in
            input.withMemoryRebound(to: CChar.self) { chars in
                sodium_base642bin(&output, output.count, chars.baseAddress!, chars.count, nil, &length, nil, sodium_base64_VARIANT_ORIGINAL)
            }
        }
        guard status == 0, length <= limit else { return nil }
        return Array(output[..<length])
    }

    /// Whether two byte strings are equal, in time that depends only on their length.
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && sodium_memcmp(a, b, a.count) == 0
    }

    /// Zeroes `bytes` in a way the compiler may not optimise away.
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
    }
}

/// Key derivation: every key of the protocol comes from a secret through keyed BLAKE2b with a
/// distinct label, so no two keys ever coincide.
public enum Keys {
    /// The HMAC key between one member and the control server, in both directions: BLAKE2b-256
    /// keyed with X25519(one side's private key, the other's public key) over a label, the party id
    /// and both public keys (member first). Only the member (its WireGuard private key) and the
    /// server (its own) can compute it: a message under it proves who sent it. `nil` when the
    /// public key is a low-order point.
    public static func controlKey(privateKey: [UInt8], publicKey: [UInt8], member: MemberKey, server: MemberKey,
                                  party: UInt64) -> [UInt8]? {
        guard var shared = Crypto.sharedSecret(privateKey: privateKey, publicKey: publicKey) else { return nil }
        defer { Crypto.wipe(&shared) }
        var input = Array("lanrage control v2 member key".utf8) + [0]
        ByteWriter.append(party, to: &input)
        return Crypto.hash(input + member.bytes + server.bytes, key: shared)
    }

    /// What hides a relay offer's reply key in the `relays` message (XORed with it): only the member
    /// the offer is for, and the server, know the control key it comes from. An observer of the
    /// message could otherwise release or latch the member's allocation.
    public static func replyKeyMask(controlKey: [UInt8], token: [UInt8]) -> [UInt8] {
        Crypto.hash(Array("lanrage control v2 reply key mask".utf8) + [0] + token, key: controlKey)
    }

    /// The 64-bit party id carried in every control message and certificate: the first 8 bytes of
    /// an unkeyed hash of the name.
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
