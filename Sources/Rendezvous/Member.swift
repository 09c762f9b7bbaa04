import Net
import STUN

/// A member's identity: its WireGuard (Curve25519) public key, 32 bytes.
public struct MemberKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]
    public static let count = 32

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == MemberKey.count else { return nil }
        self.bytes = bytes
    }

    public static func < (lhs: MemberKey, rhs: MemberKey) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }

    /// The first 8 bytes in hex: enough to tell members apart in logs.
    public var description: String {
        let digits: [Character] = Array("0123456789abcdef")
        return String(bytes.prefix(8).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}

/// One address at which a member may be reached.
public struct Candidate: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable {
        /// An address of one of the member's own interfaces.
        case local = 1
        /// The STUN-reflexive endpoint of its WireGuard port.
        case reflexive = 2
        /// The source address the control server saw (filled in by the server).
        case observed = 3
    }

    public var kind: Kind
    public var endpoint: Endpoint

    public init(_ kind: Kind, _ endpoint: Endpoint) {
        self.kind = kind
        self.endpoint = endpoint
    }

    public var description: String { "\(kind)=\(endpoint)" }
}

extension Candidate.Kind: CustomStringConvertible {
    /// The case's name, as logs and status show it.
    public var description: String {
        switch self {
        case .local: "local"
        case .reflexive: "reflexive"
        case .observed: "observed"
        }
    }
}

/// What the registry knows of a member: key, NAT behaviour, candidates, and its certificate (see
/// ``MemberCertificate``), which alone says what the member may route.
public struct MemberRecord: Hashable, Sendable {
    public var key: MemberKey
    public var nat: NATType
    public var candidates: [Candidate]
    /// The member's certificate as signed; empty where a message carries none (a punch announcement).
    public var certificate: [UInt8]
    /// The prefixes the member's certificate grants (its addresses as host prefixes, its subnets):
    /// set only by whoever verified the certificate, never read from the wire.
    public var addresses: [IPPrefix]

    /// At most this many candidates per member.
    public static let maxCandidates = 8

    public init(key: MemberKey, nat: NATType, candidates: [Candidate], certificate: [UInt8] = [], addresses: [IPPrefix] = []) {
        self.key = key
        self.nat = nat
        self.candidates = candidates
        self.certificate = certificate
        self.addresses = addresses
    }

    public func encode(into writer: inout ByteWriter) {
        writer.raw(key.bytes)
        encodeTail(into: &writer)
    }

    /// Everything after the key: NAT, candidates, certificate (a `register` carries just this).
    func encodeTail(into writer: inout ByteWriter) {
        writer.u8(nat.wireValue)
        let list = candidates.prefix(MemberRecord.maxCandidates)
        writer.u8(UInt8(list.count))
        for candidate in list {
            writer.u8(candidate.kind.rawValue)
            writer.endpoint(candidate.endpoint)
        }
        let certificate = certificate.count <= MemberCertificate.maximumCount ? certificate : []
        writer.u16(UInt16(certificate.count))
        writer.raw(certificate)
    }

    public static func decode(from reader: inout ByteReader) throws(WireError) -> MemberRecord {
        guard let key = MemberKey(try reader.raw(MemberKey.count)) else { throw .malformed }
        return try decodeTail(key: key, from: &reader)
    }

    static func decodeTail(key: MemberKey, from reader: inout ByteReader) throws(WireError) -> MemberRecord {
        let nat = try decodeNAT(&reader), candidates = try decodeCandidates(&reader)
        let length = Int(try reader.u16())
        guard length <= MemberCertificate.maximumCount else { throw .malformed }
        return MemberRecord(key: key, nat: nat, candidates: candidates, certificate: try reader.raw(length))
    }

    /// The record without its certificate and granted prefixes (what a punch announcement carries).
    public var withoutCertificate: MemberRecord {
        MemberRecord(key: key, nat: nat, candidates: candidates)
    }

    static func decodeNAT(_ reader: inout ByteReader) throws(WireError) -> NATType {
        guard let nat = NATType(wireValue: try reader.u8()) else { throw .malformed }
        return nat
    }

    static func decodeCandidates(_ reader: inout ByteReader) throws(WireError) -> [Candidate] {
        let count = Int(try reader.u8())
        guard count <= maxCandidates else { throw .malformed }
        var candidates: [Candidate] = []
        candidates.reserveCapacity(count)
        for _ in 0..<count {
            guard let kind = Candidate.Kind(rawValue: try reader.u8()) else { throw .malformed }
            candidates.append(Candidate(kind, try reader.endpoint()))
        }
        return candidates
    }

}
