import Net
import Rendezvous
import Testing

@Suite struct MemberCertificateTests {
    static let authority = Crypto.signingKeyPair(seed: [UInt8](repeating: 0xCA, count: 32))
    static let party = Keys.partyID(name: "lan")
    static let member = MemberKey(Crypto.publicKey(ofPrivate: [UInt8](repeating: 0x11, count: 32)))!
    static let now: UInt64 = 1_790_000_000

    static func issue(member: MemberKey = member, party: UInt64 = party, addresses: [IPPrefix] = [IPPrefix("100.64.0.2/24")!],
                      subnets: [IPPrefix] = [IPPrefix("198.51.100.128/25")!], secretKey: [UInt8] = authority.secretKey) throws -> MemberCertificate {
        try MemberCertificate.issue(party: party, member: member, notBefore: now - 60, notAfter: now + 86_400, addresses: addresses,
                                    subnets: subnets, name: "alice", authority: secretKey)
    }

    @Test func aCertificateVerifiesAndGrantsItsPrefixes() throws {
        let certificate = try Self.issue()
        let verified = try MemberCertificate.verified(certificate.encoded, authority: Self.authority.publicKey, party: Self.party,
                                                      member: Self.member, now: Self.now)
        #expect(verified == certificate)
        #expect(verified.name == "alice")
        // Peers route the address as a host prefix, and the subnet.
        #expect(verified.allowedPrefixes == [IPPrefix("100.64.0.2/32")!, IPPrefix("198.51.100.128/25")!])
        #expect(certificate.encoded.count <= MemberCertificate.maximumCount)
    }

    /// Each reason a certificate is refused, named.
    @Test func refusedForEveryReason() throws {
        let bytes = try Self.issue().encoded
        let other = Crypto.signingKeyPair(seed: [UInt8](repeating: 0x99, count: 32))
        func verify(_ bytes: [UInt8], authority: [UInt8] = Self.authority.publicKey, party: UInt64 = Self.party,
                    member: MemberKey = Self.member, now: UInt64 = Self.now) throws(MemberCertificate.Problem) {
            _ = try MemberCertificate.verified(bytes, authority: authority, party: party, member: member, now: now)
        }
        #expect(throws: MemberCertificate.Problem.badSignature) { try verify(bytes, authority: other.publicKey) }
        #expect(throws: MemberCertificate.Problem.badSignature) { try verify(try Self.issue(secretKey: other.secretKey).encoded) }
        #expect(throws: MemberCertificate.Problem.wrongParty) { try verify(bytes, party: Keys.partyID(name: "other")) }
        #expect(throws: MemberCertificate.Problem.wrongMember) { try verify(bytes, member: MemberKey([UInt8](repeating: 7, count: 32))!) }
        #expect(throws: MemberCertificate.Problem.expired(Self.now + 86_400)) { try verify(bytes, now: Self.now + 86_401) }
        #expect(throws: MemberCertificate.Problem.notYetValid(Self.now - 60)) { try verify(bytes, now: Self.now - 61) }
        // Any changed byte (addresses, dates, key, signature) breaks it.
        for index in bytes.indices {
            var tampered = bytes
            tampered[index] ^= 0x04
            #expect(throws: MemberCertificate.Problem.self) { try verify(tampered) }
        }
        for count in 0..<bytes.count {
            #expect(throws: MemberCertificate.Problem.self) { try verify(Array(bytes.prefix(count))) }
        }
    }

    @Test func malformedFieldsAreRefusedWhenIssuing() {
        #expect(throws: MemberCertificate.Problem.self) { try Self.issue(addresses: []) }
        #expect(throws: MemberCertificate.Problem.self) { try Self.issue(subnets: [IPPrefix("198.51.100.129/25")!]) }
        #expect(throws: MemberCertificate.Problem.self) {
            try Self.issue(addresses: (1...9).map { IPPrefix(.v4(IPv4Address(100, 64, 0, UInt8($0))), 24)! }, subnets: [])
        }
    }
}

@Suite struct ControlNoticeTests {
    @Test func noticesRoundTripAndOthersAreNotNotices() {
        let cookie = ControlNotice.cookie(nonce: 77, cookie: [UInt8](repeating: 3, count: ControlNotice.cookieCount))
        #expect(cookie.encoded().count == 28)
        let cookieBytes = cookie.encoded()
        #expect(cookieBytes.withUnsafeBytes { ControlNotice(decoding: $0) } == cookie)
        let version = ControlNotice.version(lowest: 2, highest: 2)
        #expect(version.encoded().count == 6)
        let versionBytes = version.encoded()
        #expect(versionBytes.withUnsafeBytes { ControlNotice(decoding: $0) } == version)
        // A version notice is recognised whatever version byte it carries (that is its point).
        var other = version.encoded()
        other[2] = 9
        let fromOther = other.withUnsafeBytes { ControlNotice(decoding: $0) }
        #expect(fromOther == version)
        let others: [[UInt8]] = [[0x4C, 0x43, 2, 0x87], [0x4C, 0x43, 2, 0x01] + [UInt8](repeating: 0, count: 24), [0x4C, 0x52, 2, 0x7F, 2, 2]]
        for bytes in others {
            let notice = bytes.withUnsafeBytes { ControlNotice(decoding: $0) }
            #expect(notice == nil)
        }
    }
}

@Suite struct RateLimiterTests {
    @Test func aSourceGetsItsBurstThenItsRate() {
        var limiter = RateLimiter(perSecond: 10, burst: 3, capacity: 4)
        let source = IPAddress.v4(IPv4Address(198, 51, 100, 1))
        let burst = (0..<4).map { _ in limiter.allow(source, now: 0) }
        #expect(burst == [true, true, true, false])
        let later = limiter.allow(source, now: 100_000_000)
        #expect(later, "one token a tenth of a second")
    }

    /// Every address of one IPv6 /64 shares a bucket; another /64 has its own.
    @Test func anIPv6SourceIsCountedByItsSlash64() throws {
        var limiter = RateLimiter(perSecond: 1, burst: 2, capacity: 100)
        let rotating = try (1...3).map { try #require(IPAddress("2001:db8:1:2::\($0)")) }
        #expect(rotating.map { limiter.allow($0, now: 0) } == [true, true, false])
        #expect(limiter.allow(try #require(IPAddress("2001:db8:1:3::1")), now: 0))
        #expect(limiter.count == 2)
    }

    /// A full table never refuses a new source: the oldest entry makes room, and the table stays bounded.
    @Test func aFullTableEvictsTheOldestAndStaysBounded() {
        var limiter = RateLimiter(perSecond: 1, burst: 1, capacity: 100)
        let member = IPAddress.v4(IPv4Address(198, 51, 100, 1))
        let first = [limiter.allow(member, now: 0), limiter.allow(member, now: 0)]
        #expect(first == [true, false])
        var refused = 0
        for index in 0..<20_000 {
            let spoofed = IPAddress.v4(IPv4Address(203, 0, UInt8(index >> 8 & 0xFF), UInt8(index & 0xFF)))
            if !limiter.allow(spoofed, now: 1) { refused += 1 }
        }
        #expect(refused == 0, "a new source is always taken")
        #expect(limiter.count == 100)
        let again = limiter.allow(member, now: 2)
        #expect(again, "evicted: it starts again with a full bucket")
    }
}
