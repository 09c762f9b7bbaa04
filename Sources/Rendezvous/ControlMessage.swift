import Net
import STUN

/// A message of the control protocol (docs/PROTOCOL.md). Every message is authenticated with
/// HMAC-SHA256 under the control key of the member it is from or for (``Keys/controlKey``: X25519
/// of the member's WireGuard key and the server's key), and carries a timestamp and a random nonce
/// against replay. The sender is the member's key, or the server's own on messages from the server.
///
///     0  'L' 'C'   magic              12 timestamp (ms since 1970, u64)   28 sender key (32)
///     2  version (2)                  20 nonce (u64, random)              60 body length (u16)
///     3  type                         62 body … then HMAC-SHA256 tag (32) over bytes 0 ..< 62+length
///     4  party id (u64)
public struct ControlMessage: Equatable, Sendable {
    public var partyID: UInt64
    public var timestampMillis: UInt64
    public var nonce: UInt64
    public var sender: MemberKey
    public var body: Body

    public static let magic: (UInt8, UInt8) = (0x4C, 0x43)  // "LC"
    public static let version: UInt8 = 2
    public static let headerCount = 62
    public static let minimumCount = headerCount + 32
    /// Larger datagrams are dropped unread (and counted as oversized).
    public static let maximumCount = 1200

    public enum Body: Equatable, Sendable {
        // Member → server.
        /// Joins (or updates the record): the cookie the server gave under load (zeros without one),
        /// the member's NAT and candidates, and its certificate.
        case register(cookie: [UInt8], nat: NATType, candidates: [Candidate], certificate: [UInt8])
        case heartbeat(revision: UInt64)
        case leave
        case punchRequest(target: MemberKey)
        case relayRequest(target: MemberKey)
        // Server → member.
        /// The answer to `register`: the server's epoch (random per start), the party's revision,
        /// the heartbeat interval, the member's address as seen by the server, the number of other
        /// members that follow as `member(.present, …)` messages.
        case registered(epoch: UInt64, revision: UInt64, heartbeatSeconds: UInt16, observed: Endpoint, others: UInt16)
        case member(event: MemberEvent, record: MemberRecord, revision: UInt64)
        /// Punch `peer` at its candidates from `startMillis` (wall clock, ms since 1970).
        case punch(peer: MemberRecord, startMillis: UInt64)
        case relays(peer: MemberKey, offers: [RelayOffer])
        case heartbeatAck(epoch: UInt64, revision: UInt64)
        case refused(Refusal)

        var type: UInt8 {
            switch self {
            case .register: 0x01
            case .heartbeat: 0x02
            case .leave: 0x03
            case .punchRequest: 0x04
            case .relayRequest: 0x05
            case .registered: 0x81
            case .member: 0x82
            case .punch: 0x83
            case .relays: 0x84
            case .heartbeatAck: 0x85
            case .refused: 0x86
            }
        }
    }

    public enum MemberEvent: UInt8, Sendable {
        /// Already there when the receiver registered.
        case present = 0
        case joined = 1
        case updated = 2
        case left = 3
    }

    public enum Refusal: UInt8, Sendable {
        /// The server does not know the sender (it restarted, or expired it): register again.
        case registerAgain = 1
        case partyFull = 2
        case peerUnknown = 3
        case noRelay = 4
        /// The member's certificate is not valid for the party (signature, party, key, dates).
        case certificateRefused = 5
        /// The administrator removed the member.
        case revoked = 6
        /// The register's timestamp is further from the server's clock than the replay window
        /// allows: one of the two clocks is off (the answer's own timestamp tells by how much).
        case clockSkew = 7
    }

    public init(partyID: UInt64, timestampMillis: UInt64, nonce: UInt64, sender: MemberKey, body: Body) {
        self.partyID = partyID
        self.timestampMillis = timestampMillis
        self.nonce = nonce
        self.sender = sender
        self.body = body
    }

    /// The message with its tag under `key`.
    public func encoded(key: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 160)
        writer.u8(Self.magic.0); writer.u8(Self.magic.1); writer.u8(Self.version); writer.u8(body.type)
        writer.u64(partyID); writer.u64(timestampMillis); writer.u64(nonce); writer.raw(sender.bytes)
        writer.u16(0)
        switch body {
        case .register(let cookie, let nat, let candidates, let certificate):
            writer.raw(cookie.count == ControlNotice.cookieCount ? cookie : [UInt8](repeating: 0, count: ControlNotice.cookieCount))
            MemberRecord(key: sender, nat: nat, candidates: candidates, certificate: certificate).encodeTail(into: &writer)
        case .heartbeat(let revision):
            writer.u64(revision)
        case .leave:
            break
        case .punchRequest(let target), .relayRequest(let target):
            writer.raw(target.bytes)
        case .registered(let epoch, let revision, let heartbeat, let observed, let others):
            writer.u64(epoch); writer.u64(revision); writer.u16(heartbeat); writer.endpoint(observed); writer.u16(others)
        case .member(let event, let record, let revision):
            writer.u8(event.rawValue); writer.u64(revision); record.encode(into: &writer)
        case .punch(let peer, let start):
            writer.u64(start); peer.encode(into: &writer)
        case .relays(let peer, let offers):
            writer.raw(peer.bytes)
            // As many offers as the datagram holds (eight IPv6 offers would not fit 1,200 bytes).
            var room = Self.maximumCount - Self.headerCount - Crypto.tagCount - MemberKey.count - 1
            let list = offers.prefix(RelayOffer.maxCount).prefix { offer in
                room -= offer.encodedCount
                return room >= 0
            }
            writer.u8(UInt8(list.count))
            for offer in list { offer.encode(into: &writer) }
        case .heartbeatAck(let epoch, let revision):
            writer.u64(epoch); writer.u64(revision)
        case .refused(let refusal):
            writer.u8(refusal.rawValue)
        }
        let length = writer.bytes.count - Self.headerCount
        writer.bytes[60] = UInt8(length >> 8)
        writer.bytes[61] = UInt8(truncatingIfNeeded: length)
        let tagOffset = writer.bytes.count
        writer.bytes.append(contentsOf: repeatElement(0, count: Crypto.tagCount))
        writer.bytes.withUnsafeMutableBytes { raw in
            Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<tagOffset]), key: key,
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[tagOffset...]))
        }
        return writer.bytes
    }

    /// The unauthenticated header fields, read to find the key to check the tag with.
    public struct Header: Equatable, Sendable {
        public var type: UInt8
        public var partyID: UInt64
        public var timestampMillis: UInt64
        public var nonce: UInt64
        public var sender: MemberKey
        public var bodyLength: Int

        public init(type: UInt8, partyID: UInt64, timestampMillis: UInt64, nonce: UInt64, sender: MemberKey, bodyLength: Int) {
            self.type = type
            self.partyID = partyID
            self.timestampMillis = timestampMillis
            self.nonce = nonce
            self.sender = sender
            self.bodyLength = bodyLength
        }
    }

    /// Checks size, magic, version and length, and reads the header. Does not authenticate.
    public static func header(of bytes: UnsafeRawBufferPointer) throws(WireError) -> Header {
        guard bytes.count <= maximumCount else { throw .oversized }
        guard bytes.count >= minimumCount else { throw .truncated }
        guard bytes[0] == magic.0, bytes[1] == magic.1 else { throw .badMagic }
        guard bytes[2] == version else { throw .badVersion }
        var reader = ByteReader(bytes, offset: 3)
        let type = try reader.u8()
        let party = try reader.u64(), timestamp = try reader.u64(), nonce = try reader.u64()
        guard let sender = MemberKey(try reader.raw(MemberKey.count)) else { throw .malformed }
        let length = Int(try reader.u16())
        guard headerCount + length + Crypto.tagCount == bytes.count else { throw .malformed }
        return Header(type: type, partyID: party, timestampMillis: timestamp, nonce: nonce, sender: sender, bodyLength: length)
    }

    /// Authenticates `bytes` under `key` and decodes it. Replay is the caller's to check
    /// (``ReplayWindow``), with the timestamp and nonce of the result.
    public init(authenticating bytes: UnsafeRawBufferPointer, key: [UInt8]) throws(WireError) {
        let header = try Self.header(of: bytes)
        let tagOffset = Self.headerCount + header.bodyLength
        guard Crypto.verify(tag: UnsafeRawBufferPointer(rebasing: bytes[tagOffset...]),
                            of: UnsafeRawBufferPointer(rebasing: bytes[..<tagOffset]), key: key)
        else { throw .unauthenticated }
        self = try Self(header: header, body: UnsafeRawBufferPointer(rebasing: bytes[..<tagOffset]))
    }

    public init(authenticating bytes: [UInt8], key: [UInt8]) throws(WireError) {
        self = try bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try Self(authenticating: raw, key: key) } }.get()
    }

    /// Decodes the body of an already authenticated message (also the fuzz target's entry point).
    public init(header: Header, body bytes: UnsafeRawBufferPointer) throws(WireError) {
        var reader = ByteReader(bytes, offset: Self.headerCount)
        let body: Body
        switch header.type {
        case 0x01:
            let cookie = try reader.raw(ControlNotice.cookieCount)
            let record = try MemberRecord.decodeTail(key: header.sender, from: &reader)
            body = .register(cookie: cookie, nat: record.nat, candidates: record.candidates, certificate: record.certificate)
        case 0x02: body = .heartbeat(revision: try reader.u64())
        case 0x03: body = .leave
        case 0x04, 0x05:
            guard let target = MemberKey(try reader.raw(MemberKey.count)) else { throw .malformed }
            body = header.type == 0x04 ? .punchRequest(target: target) : .relayRequest(target: target)
        case 0x81:
            body = .registered(epoch: try reader.u64(), revision: try reader.u64(), heartbeatSeconds: try reader.u16(),
                               observed: try reader.endpoint(), others: try reader.u16())
        case 0x82:
            guard let event = MemberEvent(rawValue: try reader.u8()) else { throw .malformed }
            let revision = try reader.u64()
            body = .member(event: event, record: try MemberRecord.decode(from: &reader), revision: revision)
        case 0x83:
            let start = try reader.u64()
            body = .punch(peer: try MemberRecord.decode(from: &reader), startMillis: start)
        case 0x84:
            guard let peer = MemberKey(try reader.raw(MemberKey.count)) else { throw .malformed }
            let count = Int(try reader.u8())
            guard count <= RelayOffer.maxCount else { throw .malformed }
            var offers: [RelayOffer] = []
            for _ in 0..<count { offers.append(try RelayOffer.decode(from: &reader)) }
            body = .relays(peer: peer, offers: offers)
        case 0x85: body = .heartbeatAck(epoch: try reader.u64(), revision: try reader.u64())
        case 0x86:
            guard let refusal = Refusal(rawValue: try reader.u8()) else { throw .malformed }
            body = .refused(refusal)
        default:
            throw .unknownType
        }
        guard reader.remaining == 0 else { throw .malformed }
        self.init(partyID: header.partyID, timestampMillis: header.timestampMillis, nonce: header.nonce,
                  sender: header.sender, body: body)
    }
}

/// A relay the control server knows: where its allocation service listens, how loaded it is, a
/// token that lets the receiver allocate its side of the pair there, and the key that authenticates
/// the relay's answer to that token.
public struct RelayOffer: Equatable, Sendable {
    public var service: Endpoint
    public var allocations: UInt16
    public var capacity: UInt16
    public var token: [UInt8]
    /// `Keys.relayReplyKey` of the token (32 bytes).
    public var replyKey: [UInt8]

    public static let maxCount = 8

    public init(service: Endpoint, allocations: UInt16, capacity: UInt16, token: [UInt8], replyKey: [UInt8]) {
        self.service = service
        self.allocations = allocations
        self.capacity = capacity
        self.token = token
        self.replyKey = replyKey
    }

    /// Its size in a `relays` message.
    var encodedCount: Int { (service.address.family == 2 ? 7 : 19) + 5 + min(token.count, 255) + 32 }

    func encode(into writer: inout ByteWriter) {
        writer.endpoint(service); writer.u16(allocations); writer.u16(capacity)
        writer.u8(UInt8(clamping: token.count)); writer.raw(token.prefix(255))
        writer.raw(replyKey.prefix(32))
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> RelayOffer {
        let service = try reader.endpoint()
        let allocations = try reader.u16(), capacity = try reader.u16()
        let count = Int(try reader.u8())
        let token = try reader.raw(count)
        return RelayOffer(service: service, allocations: allocations, capacity: capacity, token: token, replyKey: try reader.raw(32))
    }
}

extension ControlMessage.Refusal: CustomStringConvertible {
    /// The case's name, as logs show it.
    public var description: String {
        switch self {
        case .registerAgain: "registerAgain"
        case .partyFull: "partyFull"
        case .peerUnknown: "peerUnknown"
        case .noRelay: "noRelay"
        case .certificateRefused: "certificateRefused"
        case .revoked: "revoked"
        case .clockSkew: "clockSkew"
        }
    }
}
