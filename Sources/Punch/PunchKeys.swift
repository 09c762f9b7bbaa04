import CSodium

/// Identifies a member in punch messages: the first 8 bytes of BLAKE2b of its WireGuard public key.
public struct KeyID: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 8
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == KeyID.byteCount else { return nil }
        self.bytes = Array(bytes)
    }

    /// The id of a WireGuard public key (32 bytes).
    public init(publicKey: [UInt8]) {
        precondition(publicKey.count == 32, "a WireGuard public key has 32 bytes")
        var out = [UInt8](repeating: 0, count: KeyID.byteCount)
        _ = crypto_generichash(&out, out.count, publicKey, UInt64(publicKey.count), nil, 0)
        bytes = out
    }

    /// Sixteen lower-case hex digits.
    public var description: String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }
}

/// The key that authenticates punch messages between two members. Both derive it on their own
/// from X25519 of their WireGuard keys — nobody else, the control server included, can compute
/// it — then BLAKE2b keyed by the shared point over a label and both public keys in a fixed order.
public struct PairKey: Sendable {
    let key: [UInt8]
    /// The local member's id and the remote member's.
    public let local: KeyID
    public let remote: KeyID

    /// Derives the pair key; `nil` when the remote key is a low-order point (no shared secret).
    public init?(localPrivateKey: [UInt8], localPublicKey: [UInt8], remotePublicKey: [UInt8]) {
        guard localPrivateKey.count == 32, localPublicKey.count == 32, remotePublicKey.count == 32,
              sodium_init() >= 0 else { return nil }
        var shared = [UInt8](repeating: 0, count: 32)
        defer { sodium_memzero(&shared, shared.count) }
        guard crypto_scalarmult(&shared, localPrivateKey, remotePublicKey) == 0 else { return nil }
        let ordered = localPublicKey.lexicographicallyPrecedes(remotePublicKey)
            ? localPublicKey + remotePublicKey : remotePublicKey + localPublicKey
        let message = Array("LANrage punch v1".utf8) + ordered
        var derived = [UInt8](repeating: 0, count: 32)
        _ = crypto_generichash(&derived, derived.count, message, UInt64(message.count), shared, shared.count)
        key = derived
        local = KeyID(publicKey: localPublicKey)
        remote = KeyID(publicKey: remotePublicKey)
    }

    /// HMAC-SHA256 of `bytes` under the pair key, truncated to `PunchMessage.macCount` bytes.
    func mac(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var full = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha256_BYTES))
        let data = Array(bytes)
        _ = crypto_auth_hmacsha256(&full, data, UInt64(data.count), key)
        return Array(full.prefix(PunchMessage.macCount))
    }
}
