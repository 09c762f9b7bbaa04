import Net
import Rendezvous
import Testing

@Suite struct ControlMessageTests {
    static let alicePrivate = [UInt8](repeating: 0xA1, count: 32)
    static let serverPrivate = [UInt8](repeating: 0x5E, count: 32)
    static let alice = MemberKey(Crypto.publicKey(ofPrivate: alicePrivate))!
    static let server = MemberKey(Crypto.publicKey(ofPrivate: serverPrivate))!
    static let bob = MemberKey([UInt8](repeating: 0xB2, count: 32))!
    static let key = Keys.controlKey(privateKey: alicePrivate, publicKey: server.bytes, member: alice, server: server,
                                     party: Keys.partyID(name: "lan"))!
    static let candidates = [Candidate(.local, Endpoint("203.0.113.2:51820")!), Candidate(.reflexive, Endpoint("198.51.100.6:40000")!),
                             Candidate(.local, Endpoint("[2001:db8::1]:51820")!)]
    static let certificate = [UInt8](repeating: 0x4C, count: 180)
    static let cookie = [UInt8](repeating: 0xC0, count: ControlNotice.cookieCount)
    static let noCookie = [UInt8](repeating: 0, count: ControlNotice.cookieCount)

    static let bodies: [ControlMessage.Body] = [
        .register(cookie: cookie, nat: .portRestrictedCone, candidates: candidates, certificate: certificate),
        .register(cookie: noCookie, nat: .unknown, candidates: [], certificate: []),
        .heartbeat(revision: 42),
        .leave,
        .punchRequest(target: bob),
        .relayRequest(target: bob),
        .registered(epoch: 7, revision: 9, heartbeatSeconds: 10, observed: Endpoint("198.51.100.6:40001")!, others: 3),
        .member(event: .joined, record: MemberRecord(key: bob, nat: .symmetric, candidates: candidates, certificate: certificate), revision: 10),
        .punch(peer: MemberRecord(key: bob, nat: .fullCone, candidates: candidates), startMillis: 1_790_000_000_123),
        .relays(peer: bob, offers: [RelayOffer(service: Endpoint("192.0.2.1:40000")!, allocations: 3, capacity: 499,
                                               token: [UInt8](repeating: 7, count: RelayToken.count),
                                               replyKey: [UInt8](repeating: 9, count: 32))]),
        .heartbeatAck(epoch: 7, revision: 11),
        .refused(.registerAgain),
        .refused(.certificateRefused),
    ]

    static func message(_ body: ControlMessage.Body, nonce: UInt64 = 1) -> ControlMessage {
        ControlMessage(partyID: Keys.partyID(name: "lan"), timestampMillis: 1_790_000_000_000, nonce: nonce, sender: alice, body: body)
    }

    @Test(arguments: 0..<bodies.count)
    func everyBodyRoundTrips(_ index: Int) throws {
        let original = Self.message(Self.bodies[index])
        let bytes = original.encoded(key: Self.key)
        #expect(bytes.count <= ControlMessage.maximumCount)
        #expect(try ControlMessage(authenticating: bytes, key: Self.key) == original)
    }

    @Test func headerLayoutIsAsDocumented() {
        let bytes = Self.message(.leave).encoded(key: Self.key)
        #expect(bytes.count == ControlMessage.minimumCount)
        #expect(Array(bytes[0..<4]) == [0x4C, 0x43, 2, 0x03])
        #expect(Array(bytes[28..<60]) == Self.alice.bytes)
        #expect(bytes[60] == 0 && bytes[61] == 0)
    }

    @Test func wrongKeyIsUnauthenticated() {
        let bytes = Self.message(.heartbeat(revision: 1)).encoded(key: Self.key)
        // Another member's key, or the same member's in another party, or another server's: all refused.
        let mallory = [UInt8](repeating: 0x33, count: 32)
        let wrongKeys = [
            Keys.controlKey(privateKey: mallory, publicKey: Self.server.bytes, member: Self.alice, server: Self.server, party: Keys.partyID(name: "lan"))!,
            Keys.controlKey(privateKey: Self.alicePrivate, publicKey: Self.server.bytes, member: Self.alice, server: Self.server, party: 9)!,
            Keys.controlKey(privateKey: Self.alicePrivate, publicKey: Crypto.publicKey(ofPrivate: mallory), member: Self.alice,
                            server: Self.server, party: Keys.partyID(name: "lan"))!,
        ]
        for wrong in wrongKeys {
            #expect(throws: WireError.unauthenticated) { try ControlMessage(authenticating: bytes, key: wrong) }
        }
    }

    @Test func everyFlippedBitIsRefused() {
        let bytes = Self.message(.register(cookie: Self.cookie, nat: .open, candidates: Self.candidates, certificate: Self.certificate))
            .encoded(key: Self.key)
        for index in bytes.indices {
            for bit in 0..<8 {
                var tampered = bytes
                tampered[index] ^= 1 << bit
                #expect(throws: WireError.self) { try ControlMessage(authenticating: tampered, key: Self.key) }
            }
        }
    }

    @Test func everyTruncationAndExtensionIsRefused() {
        let bytes = Self.message(.punch(peer: MemberRecord(key: Self.bob, nat: .open, candidates: Self.candidates), startMillis: 5))
            .encoded(key: Self.key)
        for count in 0..<bytes.count {
            #expect(throws: WireError.self) { try ControlMessage(authenticating: Array(bytes.prefix(count)), key: Self.key) }
        }
        #expect(throws: WireError.self) { try ControlMessage(authenticating: bytes + [0], key: Self.key) }
        #expect(throws: WireError.oversized) {
            try ControlMessage(authenticating: bytes + [UInt8](repeating: 0, count: 2000), key: Self.key)
        }
    }

    @Test func wrongMagicAndVersionAreNamed() {
        var bytes = Self.message(.leave).encoded(key: Self.key)
        bytes[2] = 1
        #expect(throws: WireError.badVersion) { try ControlMessage(authenticating: bytes, key: Self.key) }
        bytes[0] = 0
        #expect(throws: WireError.badMagic) { try ControlMessage(authenticating: bytes, key: Self.key) }
    }

    /// Authenticated but nonsensical bodies (a sender with the key could send them) are refused, never trap.
    @Test func authenticatedGarbageBodiesAreRefused() {
        var generator = SystemRandomNumberGenerator()
        for type: UInt8 in [0x01, 0x02, 0x04, 0x81, 0x82, 0x83, 0x84, 0x86, 0x99] {
            for length in [0, 1, 5, 33, 40, 200] {
                var writer = ByteWriter()
                writer.raw([0x4C, 0x43, 2, type])
                writer.u64(1); writer.u64(2); writer.u64(3); writer.raw(Self.alice.bytes)
                writer.u16(UInt16(length))
                writer.raw((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
                var bytes = writer.bytes + [UInt8](repeating: 0, count: 32)
                let signed = bytes.count - 32
                bytes.withUnsafeMutableBytes { raw in
                    Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<signed]), key: Self.key,
                                        into: UnsafeMutableRawBufferPointer(rebasing: raw[signed...]))
                }
                _ = try? ControlMessage(authenticating: bytes, key: Self.key)
            }
        }
        // A candidate count above the limit is malformed even when authentic.
        var writer = ByteWriter()
        writer.raw([0x4C, 0x43, 2, 0x01]); writer.u64(1); writer.u64(2); writer.u64(3); writer.raw(Self.alice.bytes)
        writer.u16(18); writer.raw(Self.cookie); writer.u8(0); writer.u8(200)
        var bytes = writer.bytes + [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { raw in
            Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<80]), key: Self.key,
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[80...]))
        }
        #expect(throws: WireError.malformed) { try ControlMessage(authenticating: bytes, key: Self.key) }
    }

    @Test func randomDatagramsNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let count = Int.random(in: 0...1400, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count > 4, Bool.random(using: &generator) { bytes[0] = 0x4C; bytes[1] = 0x43; bytes[2] = 2 }
            _ = try? ControlMessage(authenticating: bytes, key: Self.key)
            _ = bytes.withUnsafeBytes { try? RelayMessage(decoding: $0, key: Self.key) }
            _ = bytes.withUnsafeBytes { try? RelayToken(decoding: $0) }
            _ = bytes.withUnsafeBytes { ControlNotice(decoding: $0) }
            _ = try? MemberCertificate(decoding: bytes)
        }
    }

    /// The member and the server derive the same control key, each from its own private key and the
    /// other's public key; a low-order public key gives none.
    @Test func bothSidesDeriveOneControlKeyPerMemberAndParty() {
        let party = Keys.partyID(name: "lan")
        let fromServer = Keys.controlKey(privateKey: Self.serverPrivate, publicKey: Self.alice.bytes, member: Self.alice,
                                         server: Self.server, party: party)
        #expect(fromServer == Self.key)
        #expect(Self.key.count == 32)
        #expect(Keys.controlKey(privateKey: Self.alicePrivate, publicKey: [UInt8](repeating: 0, count: 32), member: Self.alice,
                                server: Self.server, party: party) == nil)
        #expect(Keys.relayKey(secret: Array("s".utf8)) != Self.key)
        #expect(Keys.partyID(name: "lan") != Keys.partyID(name: "lan2"))
        #expect(Keys.pairID(party: 1, Self.alice, Self.bob) == Keys.pairID(party: 1, Self.bob, Self.alice))
        #expect(Keys.pairID(party: 1, Self.alice, Self.bob) != Keys.pairID(party: 2, Self.alice, Self.bob))
    }
}

@Suite struct ReplayWindowTests {
    @Test func aMessageIsAcceptedOnce() {
        var window = ReplayWindow()
        #expect(window.check(timestamp: 100_000, nonce: 1, now: 100_500) == .fresh)
        #expect(window.check(timestamp: 100_000, nonce: 1, now: 100_600) == .replayed)
        #expect(window.check(timestamp: 100_000, nonce: 2, now: 100_600) == .fresh)
    }

    @Test func oldAndFutureTimestampsAreExpired() {
        var window = ReplayWindow()
        #expect(window.check(timestamp: 100_000, nonce: 1, now: 100_000 + ReplayWindow.skewMillis + 1) == .expired)
        #expect(window.check(timestamp: 200_000, nonce: 1, now: 200_000 - ReplayWindow.skewMillis - 1) == .expired)
    }

    @Test func theWindowIsBoundedAndForgetsWhatAgedOut() {
        var window = ReplayWindow()
        for nonce in 0..<UInt64(ReplayWindow.capacity) {
            #expect(window.check(timestamp: 1_000_000, nonce: nonce, now: 1_000_000) == .fresh)
        }
        #expect(window.check(timestamp: 1_000_000, nonce: .max, now: 1_000_000) == .replayed, "full: refused")
        // Once the old entries are beyond replay (older than twice the skew), room is made.
        let later: UInt64 = 1_000_000 + 2 * ReplayWindow.skewMillis + 1
        #expect(window.check(timestamp: later, nonce: .max, now: later) == .fresh)
    }
}

@Suite struct RelayTokenTests {
    static let key = Keys.relayKey(secret: Array("relay secret".utf8))
    static let token = RelayToken(side: 1, address: .v4(IPv4Address(198, 51, 100, 6)), expiresAt: 2_000_000_000,
                                  partyID: 77, pairID: [UInt8](repeating: 9, count: 16))

    @Test func roundTripsAndIsDocumentedSize() throws {
        let bytes = Self.token.encoded(key: Self.key)
        #expect(bytes.count == RelayToken.count)
        let decoded = try bytes.withUnsafeBytes { try RelayToken(verifying: $0, key: Self.key, nowSeconds: 1_999_999_999) }
        #expect(decoded == Self.token)
    }

    @Test func forgedExpiredAndTamperedTokensAreRefused() {
        let bytes = Self.token.encoded(key: Self.key)
        let other = Keys.relayKey(secret: Array("other".utf8))
        #expect(throws: WireError.unauthenticated) {
            try bytes.withUnsafeBytes { try RelayToken(verifying: $0, key: other, nowSeconds: 0) }
        }
        #expect(throws: WireError.expired) {
            try bytes.withUnsafeBytes { try RelayToken(verifying: $0, key: Self.key, nowSeconds: 2_000_000_001) }
        }
        for index in bytes.indices {
            var tampered = bytes
            tampered[index] ^= 0x01
            #expect(throws: WireError.self) { try tampered.withUnsafeBytes { try RelayToken(verifying: $0, key: Self.key, nowSeconds: 0) } }
        }
    }

    @Test func relayMessagesRoundTripAndLoadIsAuthenticated() throws {
        let messages: [RelayMessage] = [
            .allocate(nonce: 5, token: Self.token.encoded(key: Self.key)),
            .allocated(nonce: 5, status: .granted, port: 40_001, idleSeconds: 120),
            .loadQuery(timestampMillis: 123, nonce: 4),
            .load(timestampMillis: 124, nonce: 4, allocations: 2, capacity: 499),
        ]
        for message in messages {
            let bytes = message.encoded(key: Self.key)
            #expect(try bytes.withUnsafeBytes { try RelayMessage(decoding: $0, key: Self.key) } == message)
        }
        // A grant is authenticated under its token's reply key: forged or unsigned grants are refused.
        let token = Self.token.encoded(key: Self.key)
        let replyKey = Keys.relayReplyKey(relayKey: Self.key, token: token)
        let grant = RelayMessage.allocated(nonce: 5, status: .granted, port: 40_001, idleSeconds: 120)
        #expect(try grant.encoded(key: replyKey).withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } == grant)
        let forged = grant.encoded(key: Keys.relayReplyKey(relayKey: Self.key, token: token.map { $0 ^ 1 }))
        #expect(throws: WireError.unauthenticated) { try forged.withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } }
        #expect(throws: WireError.unauthenticated) { try grant.encoded(key: replyKey).withUnsafeBytes { try RelayMessage(decoding: $0, key: nil) } }
        let load = RelayMessage.load(timestampMillis: 124, nonce: 4, allocations: 2, capacity: 499).encoded(key: Self.key)
        #expect(throws: WireError.unauthenticated) {
            try load.withUnsafeBytes { try RelayMessage(decoding: $0, key: Keys.relayKey(secret: [1])) }
        }
        #expect(throws: WireError.unauthenticated) { try load.withUnsafeBytes { try RelayMessage(decoding: $0, key: nil) } }
    }

    /// A release is signed with its token's reply key, which the relay derives from its own key; the
    /// answer with the same reply key. Neither verifies under any other key, nor with a byte changed.
    @Test func releasesAreAuthenticatedByTheirTokensReplyKey() throws {
        let token = Self.token.encoded(key: Self.key)
        let replyKey = Keys.relayReplyKey(relayKey: Self.key, token: token)
        let release = RelayMessage.release(nonce: 8, token: token)
        let bytes = release.encoded(key: replyKey)
        #expect(bytes.count == 127)
        #expect(try bytes.withUnsafeBytes { try RelayMessage(decoding: $0, key: Self.key) } == release)
        // Signed with the relay key itself, or with another token's reply key: refused.
        #expect(throws: WireError.unauthenticated) { try release.encoded(key: Self.key).withUnsafeBytes { try RelayMessage(decoding: $0, key: Self.key) } }
        let other = Keys.relayReplyKey(relayKey: Self.key, token: token.map { $0 ^ 1 })
        #expect(throws: WireError.unauthenticated) { try release.encoded(key: other).withUnsafeBytes { try RelayMessage(decoding: $0, key: Self.key) } }
        for index in bytes.indices {
            var tampered = bytes
            tampered[index] ^= 0x01
            #expect(throws: WireError.self) { try tampered.withUnsafeBytes { try RelayMessage(decoding: $0, key: Self.key) } }
        }
        let released = RelayMessage.released(nonce: 8)
        #expect(released.encoded(key: replyKey).count == 44)
        #expect(try released.encoded(key: replyKey).withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } == released)
        #expect(throws: WireError.unauthenticated) { try released.encoded(key: other).withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } }
    }

    /// A latch is signed with its token's reply key and verifies under no other key, nor with a byte
    /// changed. It fits the relay's size limit, and never looks like a WireGuard message (a type byte
    /// 1 to 4, then three zero bytes), whatever its port and counter.
    @Test func latchesAreAuthenticatedAndNeverLookLikeWireGuard() throws {
        let token = Self.token.encoded(key: Self.key)
        let replyKey = Keys.relayReplyKey(relayKey: Self.key, token: token)
        let latch = RelayMessage.latch(port: 40_003, counter: 1_700_000_000_000_123)
        let bytes = latch.encoded(key: replyKey)
        #expect(bytes.count == RelayMessage.latchCount && bytes.count == 46 && bytes.count <= RelayMessage.maximumCount)
        #expect(Array(bytes[..<4]) == [0x4C, 0x52, 1, 0x07] && Array(bytes[4..<6]) == [0x9C, 0x43])
        #expect(try bytes.withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } == latch)
        #expect(bytes.withUnsafeBytes { RelayMessage.looksLikeLatch($0) })
        let other = Keys.relayReplyKey(relayKey: Self.key, token: token.map { $0 ^ 1 })
        #expect(throws: WireError.unauthenticated) { try latch.encoded(key: other).withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } }
        #expect(throws: WireError.unauthenticated) { try bytes.withUnsafeBytes { try RelayMessage(decoding: $0, key: nil) } }
        for index in bytes.indices {
            var tampered = bytes
            tampered[index] ^= 0x01
            #expect(throws: WireError.self) { try tampered.withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } }
        }
        #expect(throws: WireError.self) { try Array(bytes.dropLast()).withUnsafeBytes { try RelayMessage(decoding: $0, key: replyKey) } }
        for port: UInt16 in [0, 1, 40_000, .max] {
            for counter: UInt64 in [0, 1, 1 << 32, .max] {
                let encoded = RelayMessage.latch(port: port, counter: counter).encoded(key: replyKey)
                #expect(!(1...4).contains(encoded[0]) && encoded.count == RelayMessage.latchCount)
            }
        }
        // WireGuard's messages (initiation 148, response 92, cookie 64, data from 32 bytes) are no latches.
        for (type, count) in [(1, 148), (2, 92), (3, 64), (4, 32), (4, 46)] {
            let message = [UInt8(type), 0, 0, 0] + [UInt8](repeating: 0x4C, count: count - 4)
            #expect(!message.withUnsafeBytes { RelayMessage.looksLikeLatch($0) })
        }
    }
}
