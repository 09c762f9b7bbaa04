import Control
import Net
import Rendezvous
import Time

/// A party for in-process tests: its authority, the control server's key, and members with
/// certificates (member `i` has the overlay address 100.64.0.i/24), all from fixed seeds.
public struct TestParty: Sendable {
    public let name: String
    public let authority: (publicKey: [UInt8], secretKey: [UInt8])
    public let serverPrivate: [UInt8]
    public let serverKey: MemberKey

    public init(name: String = "lan", seed: UInt8 = 0xCA) {
        self.name = name
        authority = Crypto.signingKeyPair(seed: [UInt8](repeating: seed, count: 32))
        serverPrivate = [UInt8](repeating: 0x5E, count: 32)
        serverKey = MemberKey(Crypto.publicKey(ofPrivate: serverPrivate))!
    }

    public var id: UInt64 { Keys.partyID(name: name) }

    /// Member `index` (1…250): its private key, public key and certificate.
    public func member(_ index: Int, certifiedBy secretKey: [UInt8]? = nil, addresses: [IPPrefix]? = nil,
                       subnets: [IPPrefix] = []) -> TestMember {
        var privateKey = [UInt8](repeating: 0x70, count: 32)
        // Not in byte 0: X25519 clears its three low bits, and members 1…7 would share a key.
        privateKey[1] = UInt8(index & 0xFF)
        privateKey[2] = UInt8(index >> 8 & 0xFF)
        let key = MemberKey(Crypto.publicKey(ofPrivate: privateKey))!
        return TestMember(privateKey: privateKey, key: key,
                          certificate: certificate(for: key, addresses: addresses ?? [IPPrefix(.v4(IPv4Address(100, 64, 0, UInt8(index & 0xFF))), 24)!],
                                                   subnets: subnets, secretKey: secretKey ?? authority.secretKey))
    }

    /// A certificate for `key`, valid from a minute ago for a day.
    public func certificate(for key: MemberKey, addresses: [IPPrefix], subnets: [IPPrefix] = [], secretKey: [UInt8]? = nil,
                            notAfter: UInt64? = nil) -> [UInt8] {
        let now = WallClock.unixSeconds()
        return try! MemberCertificate.issue(party: id, member: key, notBefore: now - 60, notAfter: notAfter ?? now + 86_400,
                                            addresses: addresses, subnets: subnets, name: "m", authority: secretKey ?? authority.secretKey).encoded
    }

    /// A control client's configuration for `member` of this party, talking to `server`.
    public func configuration(_ member: TestMember, server: Endpoint) -> ControlClient.Configuration {
        ControlClient.Configuration(server: server, serverKey: serverKey, party: name, authority: authority.publicKey, key: member.key,
                                    certificate: member.certificate)
    }

    /// The control key of `member` (what its messages to the server are authenticated with).
    public func controlKey(_ member: TestMember) -> [UInt8] {
        Keys.controlKey(privateKey: member.privateKey, publicKey: serverKey.bytes, member: member.key, server: serverKey, party: id)!
    }
}

/// A member of a ``TestParty``.
public struct TestMember: Sendable {
    public let privateKey: [UInt8]
    public let key: MemberKey
    public let certificate: [UInt8]

    public init(privateKey: [UInt8], key: MemberKey, certificate: [UInt8]) {
        self.privateKey = privateKey
        self.key = key
        self.certificate = certificate
    }
}
