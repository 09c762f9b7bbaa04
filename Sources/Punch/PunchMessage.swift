import CSodium

/// `LANRAGE_PUNCH` and `LANRAGE_PUNCH_ACK`: the seed's names, made unforgeable.
///
/// ```
/// LANRAGE_PUNCH\0 | LANRAGE_PUNCH_ACK\0      name, ASCII, 14 or 18 bytes
/// version           1 byte (1)
/// sender            8 bytes  KeyID of the sender's WireGuard public key
/// receiver          8 bytes  KeyID of the receiver's
/// session           8 bytes  the coordinated punch session (from the control server), big-endian
/// nonce            16 bytes  random per PUNCH; an ACK echoes the nonce of the PUNCH it answers
/// mac              16 bytes  HMAC-SHA256 under the pair key of everything before, truncated
/// ```
/// A third party can neither forge a message nor reuse one for another pair or session; an ACK
/// proves the peer saw this very PUNCH.
public struct PunchMessage: Equatable, Sendable {
    public enum Kind: Sendable, Equatable {
        case punch, ack

        var name: [UInt8] { Array((self == .punch ? "LANRAGE_PUNCH" : "LANRAGE_PUNCH_ACK").utf8) + [0] }
    }

    public static let version: UInt8 = 1
    public static let nonceCount = 16
    public static let macCount = 16

    public var kind: Kind
    public var sender: KeyID
    public var receiver: KeyID
    public var session: UInt64
    public var nonce: [UInt8]

    public init(kind: Kind, sender: KeyID, receiver: KeyID, session: UInt64, nonce: [UInt8]) {
        precondition(nonce.count == PunchMessage.nonceCount)
        self.kind = kind
        self.sender = sender
        self.receiver = receiver
        self.session = session
        self.nonce = nonce
    }

    /// A fresh random nonce.
    public static func randomNonce() -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: nonceCount)
        randombytes_buf(&nonce, nonceCount)
        return nonce
    }

    /// The message on the wire, authenticated under `key`.
    public func encoded(with key: PairKey) -> [UInt8] {
        var bytes = kind.name
        bytes.append(PunchMessage.version)
        bytes += sender.bytes
        bytes += receiver.bytes
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: session >> UInt64(shift))) }
        bytes += nonce
        bytes += key.mac(bytes[...])
        return bytes
    }

    /// The sender of a datagram that looks like a punch message, read before authentication so the
    /// receiver can pick the pair key; `nil` when the datagram is no punch message at all.
    public static func sender(of bytes: [UInt8]) -> KeyID? {
        guard let (kind, _) = header(bytes) else { return nil }
        let start = kind.name.count + 1
        return KeyID(bytes: bytes[start..<(start + KeyID.byteCount)])
    }

    /// Parses and authenticates `bytes` under `key` (the pair key of the claimed sender).
    public static func decode(_ bytes: [UInt8], key: PairKey) throws(PunchMessageError) -> PunchMessage {
        guard let (kind, length) = header(bytes) else {
            if bytes.starts(with: Array("LANRAGE_PUNCH".utf8)) { throw .malformed }
            throw .notAPunchMessage
        }
        guard bytes.count == length else { throw .malformed }
        let versionAt = kind.name.count
        guard bytes[versionAt] == version else { throw .unsupportedVersion(bytes[versionAt]) }
        var offset = versionAt + 1
        func take(_ count: Int) -> ArraySlice<UInt8> {
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }
        let sender = KeyID(bytes: take(KeyID.byteCount))!
        let receiver = KeyID(bytes: take(KeyID.byteCount))!
        let session = take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let nonce = Array(take(nonceCount))
        let mac = Array(take(macCount))
        guard sender == key.remote else { throw .unknownSender }
        guard receiver == key.local else { throw .wrongReceiver }
        let expected = key.mac(bytes[..<(bytes.count - macCount)])
        guard sodium_memcmp(mac, expected, macCount) == 0 else { throw .badMAC }
        return PunchMessage(kind: kind, sender: sender, receiver: receiver, session: session, nonce: nonce)
    }

    /// The kind and total length of a message whose name matches; `nil` when too short or no name matches.
    private static func header(_ bytes: [UInt8]) -> (Kind, Int)? {
        for kind in [Kind.ack, .punch] where bytes.starts(with: kind.name) {
            let length = kind.name.count + 1 + 2 * KeyID.byteCount + 8 + nonceCount + macCount
            return bytes.count >= kind.name.count + 1 + KeyID.byteCount ? (kind, length) : nil
        }
        return nil
    }
}

/// Why a datagram on the WireGuard port was not accepted as a punch message.
public enum PunchMessageError: Error, Hashable, Sendable {
    case notAPunchMessage
    case malformed
    case unsupportedVersion(UInt8)
    case unknownSender
    case wrongReceiver
    case badMAC
    /// An authentic PUNCH answered before (a replay).
    case replayed
}
