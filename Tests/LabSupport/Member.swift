import WireGuard

/// A party member's WireGuard key pair, as raw bytes, for tests.
public struct Member: Sendable {
    public let privateKey: [UInt8]
    public let publicKey: [UInt8]

    public init() {
        let key = Key.generatePrivate()
        privateKey = key.bytes
        publicKey = key.publicKey.bytes
    }
}
