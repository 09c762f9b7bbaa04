import Net

/// A member's identity: its WireGuard (Curve25519) public key, 32 bytes.
public struct MemberKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]
    public static let count = 32
    /// The sender of messages from the server.
    public static let server = MemberKey(unchecked: [UInt8](repeating: 0, count: 32))

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == MemberKey.count else { return nil }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public static func < (lhs: MemberKey, rhs: MemberKey) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }

    /// The first 8 bytes in hex: enough to tell members apart in logs.
    public var description: String {
        let digits: [Character] = Array("0123456789abcdef")
        return String(bytes.prefix(8).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}

/// How a member's NAT behaves, as the STUN behaviour discovery reports it (DESIGN.md, "NAT types").
public enum NATKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case unknown = 0, open, fullCone, restrictedCone, portRestrictedCone, symmetric

    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .open: "open"
        case .fullCone: "full cone"
        case .restrictedCone: "restricted cone"
        case .portRestrictedCone: "port-restricted cone"
        case .symmetric: "symmetric"
        }
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

/// What the registry knows of a member: key, NAT behaviour, candidates, and the overlay prefixes
/// it routes (its tunnel address, and any subnets it announces): the others' WireGuard allowed IPs.
public struct MemberRecord: Hashable, Sendable {
    public var key: MemberKey
    public var nat: NATKind
    public var candidates: [Candidate]
    public var addresses: [IPPrefix]

    /// At most this many candidates per member.
    public static let maxCandidates = 8
    /// At most this many overlay prefixes per member.
    public static let maxAddresses = 8

    public init(key: MemberKey, nat: NATKind, candidates: [Candidate], addresses: [IPPrefix] = []) {
        self.key = key
        self.nat = nat
        self.candidates = candidates
        self.addresses = addresses
    }

    public func encode(into writer: inout ByteWriter) {
        writer.raw(key.bytes)
        encodeTail(into: &writer)
    }

    /// Everything after the key: NAT, candidates, addresses (a `register` carries just this).
    func encodeTail(into writer: inout ByteWriter) {
        writer.u8(nat.rawValue)
        let list = candidates.prefix(MemberRecord.maxCandidates)
        writer.u8(UInt8(list.count))
        for candidate in list {
            writer.u8(candidate.kind.rawValue)
            writer.endpoint(candidate.endpoint)
        }
        let prefixes = addresses.prefix(MemberRecord.maxAddresses)
        writer.u8(UInt8(prefixes.count))
        for prefix in prefixes {
            writer.endpoint(Endpoint(prefix.address, UInt16(prefix.length)))
        }
    }

    public static func decode(from reader: inout ByteReader) throws(WireError) -> MemberRecord {
        guard let key = MemberKey(try reader.raw(MemberKey.count)) else { throw .malformed }
        return try decodeTail(key: key, from: &reader)
    }

    static func decodeTail(key: MemberKey, from reader: inout ByteReader) throws(WireError) -> MemberRecord {
        MemberRecord(key: key, nat: try decodeNAT(&reader), candidates: try decodeCandidates(&reader),
                     addresses: try decodeAddresses(&reader))
    }

    static func decodeNAT(_ reader: inout ByteReader) throws(WireError) -> NATKind {
        guard let nat = NATKind(rawValue: try reader.u8()) else { throw .malformed }
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

    /// Prefixes travel as endpoints whose port is the prefix length.
    static func decodeAddresses(_ reader: inout ByteReader) throws(WireError) -> [IPPrefix] {
        let count = Int(try reader.u8())
        guard count <= maxAddresses else { throw .malformed }
        var addresses: [IPPrefix] = []
        addresses.reserveCapacity(count)
        for _ in 0..<count {
            let encoded = try reader.endpoint()
            guard encoded.port <= 128, let prefix = IPPrefix(encoded.address, UInt8(encoded.port)) else { throw .malformed }
            addresses.append(prefix)
        }
        return addresses
    }
}
