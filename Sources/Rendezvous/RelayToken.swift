import CLinux
import Net

/// The right to allocate one side of a pair's relay allocation, issued by the control server under
/// the key it shares with its relays, verified by the relay. The relay latches that side only
/// from the address the token names.
///
///     0 version (1)   1 side (0 or 1)   2 address (family 4|6, 16 bytes, v4 in the first 4)
///     19 expiry (u64, s since 1970)   27 party id (u64)   35 pair id (16)   51 HMAC-SHA256 (32)  = 83 bytes
public struct RelayToken: Equatable, Sendable {
    public var side: UInt8
    public var address: IPAddress
    public var expiresAt: UInt64
    public var partyID: UInt64
    public var pairID: [UInt8]

    public static let count = 83
    static let version: UInt8 = 1

    public init(side: UInt8, address: IPAddress, expiresAt: UInt64, partyID: UInt64, pairID: [UInt8]) {
        self.side = side
        self.address = address
        self.expiresAt = expiresAt
        self.partyID = partyID
        self.pairID = pairID
    }

    public func encoded(key: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: Self.count)
        writer.u8(Self.version); writer.u8(side)
        switch address {
        case .v4(let v4): writer.u8(4); writer.raw(v4.bytes + [UInt8](repeating: 0, count: 12))
        case .v6(let v6): writer.u8(6); writer.raw(v6.bytes)
        }
        writer.u64(expiresAt); writer.u64(partyID); writer.raw(pairID.prefix(16))
        let signed = writer.bytes.count
        writer.bytes.append(contentsOf: repeatElement(0, count: Crypto.tagCount))
        writer.bytes.withUnsafeMutableBytes { raw in
            Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<signed]), key: key,
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[signed...]))
        }
        return writer.bytes
    }

    /// Verifies and decodes a token; `nowSeconds` for the expiry check.
    public init(verifying bytes: UnsafeRawBufferPointer, key: [UInt8], nowSeconds: UInt64) throws(WireError) {
        guard bytes.count == Self.count else { throw .malformed }
        guard Crypto.verify(tag: UnsafeRawBufferPointer(rebasing: bytes[51...]),
                            of: UnsafeRawBufferPointer(rebasing: bytes[..<51]), key: key)
        else { throw .unauthenticated }
        self = try Self(decoding: bytes)
        guard expiresAt >= nowSeconds else { throw .expired }
    }

    /// Decodes without verifying (tests and fuzzing only).
    public init(decoding bytes: UnsafeRawBufferPointer) throws(WireError) {
        guard bytes.count == Self.count else { throw .malformed }
        var reader = ByteReader(bytes)
        guard try reader.u8() == Self.version else { throw .badVersion }
        let side = try reader.u8()
        guard side <= 1 else { throw .malformed }
        let family = try reader.u8()
        let raw = try reader.raw(16)
        switch family {
        case 4: address = .v4(IPv4Address(raw[0], raw[1], raw[2], raw[3]))
        case 6: address = .v6(IPv6Address(bytes: raw)!)
        default: throw .malformed
        }
        self.side = side
        expiresAt = try reader.u64()
        partyID = try reader.u64()
        pairID = try reader.raw(16)
    }
}

/// Messages to and from a relay's service port (the first port of its range).
///
///     allocate:   'L' 'R' 1 0x01 | nonce (u64) | token (83)                          = 95 bytes
///     allocated:  'L' 'R' 1 0x02 | nonce (u64) | status (u8) | port (u16) | idle timeout s (u16) | HMAC (32)
///     load query: 'L' 'R' 1 0x03 | timestamp ms (u64) | nonce (u64) | HMAC (32)       = 52 bytes
///     load:       'L' 'R' 1 0x04 | timestamp ms (u64) | nonce (u64) | allocations (u16) | capacity (u16) | HMAC (32)
///     release:    'L' 'R' 1 0x05 | nonce (u64) | token (83) | HMAC (32)                = 127 bytes
///     released:   'L' 'R' 1 0x06 | nonce (u64) | HMAC (32)                             = 44 bytes
///     latch:      'L' 'R' 1 0x07 | port (u16) | counter (u64) | HMAC (32)               = 46 bytes
/// Load queries and reports are authenticated with the relay key; `allocated`, `release`,
/// `released` and `latch` with the reply key of the token they concern (`Keys.relayReplyKey`),
/// which only the relay and the member the token was issued to know. A latch goes to an allocation
/// port, not the service port; its first byte (`L`) is no WireGuard message type (1 to 4).
public enum RelayMessage: Equatable, Sendable {
    case allocate(nonce: UInt64, token: [UInt8])
    case allocated(nonce: UInt64, status: AllocationStatus, port: UInt16, idleSeconds: UInt16)
    case loadQuery(timestampMillis: UInt64, nonce: UInt64)
    case load(timestampMillis: UInt64, nonce: UInt64, allocations: UInt16, capacity: UInt16)
    /// The member no longer uses the allocation its token granted: the relay frees it.
    case release(nonce: UInt64, token: [UInt8])
    /// The grant of the release's token is gone (freed now, or earlier).
    case released(nonce: UInt64)
    /// Sent from the member's WireGuard port to its allocation port `port`: the relay sends the
    /// side's traffic to the datagram's source from now on. `counter` grows with every latch the
    /// member sends, so a latch replayed from elsewhere is refused.
    case latch(port: UInt16, counter: UInt64)

    public static let magic: (UInt8, UInt8) = (0x4C, 0x52)  // "LR"
    public static let maximumCount = 128
    /// The size of a latch datagram.
    public static let latchCount = 46

    public enum AllocationStatus: UInt8, Sendable {
        case granted = 0
        case full = 1
        case partyLimit = 2
        /// The relay has no address of the family of the address the token names.
        case family = 3
    }

    /// Encodes; `key` is needed for the authenticated kinds (allocated, release, released, latch: the
    /// reply key; load query and load: the relay key).
    public func encoded(key: [UInt8]? = nil) -> [UInt8] {
        var writer = ByteWriter(capacity: 96)
        writer.u8(Self.magic.0); writer.u8(Self.magic.1); writer.u8(1)
        switch self {
        case .allocate(let nonce, let token):
            writer.u8(0x01); writer.u64(nonce); writer.raw(token)
        case .allocated(let nonce, let status, let port, let idle):
            writer.u8(0x02); writer.u64(nonce); writer.u8(status.rawValue); writer.u16(port); writer.u16(idle)
        case .loadQuery(let timestamp, let nonce):
            writer.u8(0x03); writer.u64(timestamp); writer.u64(nonce)
        case .load(let timestamp, let nonce, let allocations, let capacity):
            writer.u8(0x04); writer.u64(timestamp); writer.u64(nonce); writer.u16(allocations); writer.u16(capacity)
        case .release(let nonce, let token):
            writer.u8(0x05); writer.u64(nonce); writer.raw(token)
        case .released(let nonce):
            writer.u8(0x06); writer.u64(nonce)
        case .latch(let port, let counter):
            writer.u8(0x07); writer.u16(port); writer.u64(counter)
        }
        switch self {
        case .allocated, .loadQuery, .load, .release, .released, .latch:
            let signed = writer.bytes.count
            writer.bytes.append(contentsOf: repeatElement(0, count: Crypto.tagCount))
            writer.bytes.withUnsafeMutableBytes { raw in
                Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<signed]), key: key ?? [],
                                    into: UnsafeMutableRawBufferPointer(rebasing: raw[signed...]))
            }
        default: break
        }
        return writer.bytes
    }

    /// Whether a datagram starts like a relay message (cheap check before decoding).
    public static func looksLikeRelay(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && bytes[0] == magic.0 && bytes[1] == magic.1
    }

    /// Whether a datagram has the size and header of a latch (cheap check before decoding).
    public static func looksLikeLatch(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count == latchCount && bytes[0] == magic.0 && bytes[1] == magic.1 && bytes[2] == 1 && bytes[3] == 0x07
    }

    /// Decodes; authenticated kinds are verified under `key` (and refused without one): the reply
    /// key for `allocated`, `released` and `latch`, the relay key for load queries and reports. A `release`
    /// is verified under the reply key its token gives with `key`, the relay key (the relay's side).
    public init(decoding bytes: UnsafeRawBufferPointer, key: [UInt8]?) throws(WireError) {
        guard bytes.count <= Self.maximumCount else { throw .oversized }
        guard bytes.count >= 4 else { throw .truncated }
        guard bytes[0] == Self.magic.0, bytes[1] == Self.magic.1 else { throw .badMagic }
        guard bytes[2] == 1 else { throw .badVersion }
        var reader = ByteReader(bytes, offset: 4)
        switch bytes[3] {
        case 0x01:
            self = .allocate(nonce: try reader.u64(), token: try reader.raw(RelayToken.count))
        case 0x05:
            let nonce = try reader.u64(), token = try reader.raw(RelayToken.count)
            guard reader.remaining == Crypto.tagCount else { throw .malformed }
            let signed = bytes.count - Crypto.tagCount
            guard let key, Crypto.verify(tag: UnsafeRawBufferPointer(rebasing: bytes[signed...]),
                                         of: UnsafeRawBufferPointer(rebasing: bytes[..<signed]),
                                         key: Keys.relayReplyKey(relayKey: key, token: token))
            else { throw .unauthenticated }
            self = .release(nonce: nonce, token: token)
            return
        case 0x06:
            let nonce = try reader.u64()
            guard reader.remaining == Crypto.tagCount else { throw .malformed }
            let signed = bytes.count - Crypto.tagCount
            guard let key, Crypto.verify(tag: UnsafeRawBufferPointer(rebasing: bytes[signed...]),
                                         of: UnsafeRawBufferPointer(rebasing: bytes[..<signed]), key: key)
            else { throw .unauthenticated }
            self = .released(nonce: nonce)
            return
        case 0x02, 0x03, 0x04, 0x07:
            let signed = bytes.count - Crypto.tagCount
            guard signed >= 4 else { throw .truncated }
            guard let key, Crypto.verify(tag: UnsafeRawBufferPointer(rebasing: bytes[signed...]),
                                         of: UnsafeRawBufferPointer(rebasing: bytes[..<signed]), key: key)
            else { throw .unauthenticated }
            if bytes[3] == 0x07 {
                self = .latch(port: try reader.u16(), counter: try reader.u64())
                guard reader.remaining == Crypto.tagCount else { throw .malformed }
                return
            }
            if bytes[3] == 0x02 {
                let nonce = try reader.u64()
                guard let status = AllocationStatus(rawValue: try reader.u8()) else { throw .malformed }
                self = .allocated(nonce: nonce, status: status, port: try reader.u16(), idleSeconds: try reader.u16())
                guard reader.remaining == Crypto.tagCount else { throw .malformed }
                return
            }
            let timestamp = try reader.u64(), nonce = try reader.u64()
            if bytes[3] == 0x03 {
                self = .loadQuery(timestampMillis: timestamp, nonce: nonce)
            } else {
                self = .load(timestampMillis: timestamp, nonce: nonce, allocations: try reader.u16(), capacity: try reader.u16())
            }
            guard reader.remaining == Crypto.tagCount else { throw .malformed }
            return
        default:
            throw .unknownType
        }
        guard reader.remaining == 0 else { throw .malformed }
    }
}
