import Net

/// A member's admission to a party: its WireGuard key, the overlay addresses and subnets the
/// party's administrator grants it, and a validity period, signed (Ed25519) by the party's
/// certificate authority. The control server admits only members with a valid certificate, and
/// every agent verifies its peers' certificates itself with the authority's public key: neither a
/// member nor the control server can make up a member or an address.
///
///     0 'L' 'M'  magic                 12 member key (32)           60 prefix count (u8, 1…8), each:
///     2 version (1)                    44 not before (u64, s)          kind (1 address, 2 subnet), family (4|6),
///     3 flags (0)                      52 not after (u64, s)           address (4|16), length (u8)
///     4 party id (u64)                 .. name length (u8, ≤ 32), name ([A-Za-z0-9._-])
///                                      .. Ed25519 signature (64) over every byte before it
public struct MemberCertificate: Equatable, Sendable {
    public var partyID: UInt64
    public var member: MemberKey
    /// Valid from `notBefore` to `notAfter` (seconds since 1970, both included).
    public var notBefore: UInt64
    public var notAfter: UInt64
    /// The member's overlay addresses, each with the overlay network's length (`100.64.0.2/24`): its
    /// interface addresses, and as host prefixes its peers' allowed IPs for it.
    public var addresses: [IPPrefix]
    /// Networks behind the member that it routes (a LAN behind a router): allowed IPs too.
    public var subnets: [IPPrefix]
    /// A label for logs and status, not an identity.
    public var name: String
    /// The certificate as signed.
    public private(set) var encoded: [UInt8]

    public static let magic: (UInt8, UInt8) = (0x4C, 0x4D)  // "LM"
    public static let version: UInt8 = 1
    public static let maxPrefixes = 8
    public static let maxName = 32
    /// The longest certificate: 8 IPv6 prefixes and a 32-byte name.
    public static let maximumCount = 61 + maxPrefixes * 19 + 1 + maxName + 64

    /// Why a certificate was not accepted.
    public enum Problem: Error, Equatable, Sendable, CustomStringConvertible {
        case malformed(String)
        case badSignature
        case wrongParty
        case wrongMember
        case notYetValid(UInt64)
        case expired(UInt64)

        public var description: String {
            switch self {
            case .malformed(let what): "malformed certificate (\(what))"
            case .badSignature: "certificate not signed by the party's authority"
            case .wrongParty: "certificate of another party"
            case .wrongMember: "certificate of another member's key"
            case .notYetValid(let at): "certificate valid only from \(at) (s since 1970): check the clock"
            case .expired(let at): "certificate expired at \(at) (s since 1970)"
            }
        }
    }

    /// Issues a certificate signed with the authority's Ed25519 secret key (64 bytes). The fields
    /// are checked as `init(decoding:)` checks them.
    public static func issue(party: UInt64, member: MemberKey, notBefore: UInt64, notAfter: UInt64, addresses: [IPPrefix],
                             subnets: [IPPrefix], name: String, authority secretKey: [UInt8]) throws(Problem) -> MemberCertificate {
        var writer = ByteWriter(capacity: 160)
        writer.u8(magic.0); writer.u8(magic.1); writer.u8(version); writer.u8(0)
        writer.u64(party); writer.raw(member.bytes); writer.u64(notBefore); writer.u64(notAfter)
        writer.u8(UInt8(clamping: addresses.count + subnets.count))
        for (kind, list) in [(UInt8(1), addresses), (2, subnets)] {
            for prefix in list {
                writer.u8(kind); writer.u8(prefix.address.family == 2 ? 4 : 6); writer.raw(prefix.address.bytes); writer.u8(prefix.length)
            }
        }
        writer.u8(UInt8(clamping: name.utf8.count)); writer.raw(name.utf8)
        writer.raw(Crypto.sign(writer.bytes, secretKey: secretKey))
        return try MemberCertificate(decoding: writer.bytes)
    }

    /// Decodes and checks the form only: the signature and validity are `verified`'s.
    public init(decoding bytes: [UInt8]) throws(Problem) {
        guard bytes.count <= Self.maximumCount else { throw .malformed("longer than \(Self.maximumCount) bytes") }
        let parsed = bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try Self.parse(raw) } }
        switch parsed {
        case .success(let fields): (partyID, member, notBefore, notAfter, addresses, subnets, name) = fields
        case .failure(let error): throw .malformed(error.description)
        }
        encoded = bytes
    }

    private static func parse(_ raw: UnsafeRawBufferPointer) throws(WireError)
        -> (UInt64, MemberKey, UInt64, UInt64, [IPPrefix], [IPPrefix], String) {
        var reader = ByteReader(raw)
        guard try reader.u8() == magic.0, try reader.u8() == magic.1 else { throw .badMagic }
        guard try reader.u8() == version else { throw .badVersion }
        guard try reader.u8() == 0 else { throw .malformed }
        let party = try reader.u64()
        guard let member = MemberKey(try reader.raw(MemberKey.count)) else { throw .malformed }
        let notBefore = try reader.u64(), notAfter = try reader.u64()
        let count = Int(try reader.u8())
        guard (1...maxPrefixes).contains(count) else { throw .malformed }
        var addresses: [IPPrefix] = [], subnets: [IPPrefix] = []
        for _ in 0..<count {
            let kind = try reader.u8()
            let address: IPAddress
            switch try reader.u8() {
            case 4: address = IPAddress(bytes: try reader.raw(4))!
            case 6: address = IPAddress(bytes: try reader.raw(16))!
            default: throw .malformed
            }
            guard let prefix = IPPrefix(address, try reader.u8()) else { throw .malformed }
            switch kind {
            case 1: addresses.append(prefix)
            case 2 where prefix.network == prefix: subnets.append(prefix)
            default: throw .malformed
            }
        }
        let nameBytes = try reader.raw(Int(try reader.u8()))
        guard nameBytes.count <= maxName, nameBytes.allSatisfy(isNameByte) else { throw .malformed }
        _ = try reader.raw(Crypto.signatureCount)
        guard reader.remaining == 0, !addresses.isEmpty, notBefore <= notAfter else { throw .malformed }
        return (party, member, notBefore, notAfter, addresses, subnets, String(decoding: nameBytes, as: UTF8.self))
    }

    /// Decodes `bytes` and checks it: signed by `authority` (the party's Ed25519 public key), for
    /// `party`, for `member` when given, valid at `now` (seconds since 1970).
    public static func verified(_ bytes: [UInt8], authority: [UInt8], party: UInt64, member: MemberKey? = nil,
                                now: UInt64) throws(Problem) -> MemberCertificate {
        let certificate = try MemberCertificate(decoding: bytes)
        let signed = bytes.count - Crypto.signatureCount
        let valid = bytes.withUnsafeBytes { raw in
            Crypto.verify(signature: UnsafeRawBufferPointer(rebasing: raw[signed...]),
                          of: UnsafeRawBufferPointer(rebasing: raw[..<signed]), publicKey: authority)
        }
        guard valid else { throw .badSignature }
        guard certificate.partyID == party else { throw .wrongParty }
        if let member, certificate.member != member { throw .wrongMember }
        guard now >= certificate.notBefore else { throw .notYetValid(certificate.notBefore) }
        guard now <= certificate.notAfter else { throw .expired(certificate.notAfter) }
        return certificate
    }

    /// What peers route to the member: its addresses as host prefixes, and its subnets.
    public var allowedPrefixes: [IPPrefix] {
        addresses.map { IPPrefix($0.address, $0.address.bitCount)! } + subnets
    }

    /// Letters, digits, '.', '_' and '-': a name prints as it is in logs and status.
    public static func isNameByte(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2E || byte == 0x5F || byte == 0x2D
    }
}
