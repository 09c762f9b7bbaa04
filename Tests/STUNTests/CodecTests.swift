import Net
import Testing
@testable import STUN

/// RFC 5769 test vectors, typed in from the RFC (§2.1–2.3). Their padding is 0x20, as the RFC's is.
enum RFC5769 {
    static let password = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)
    static let transactionID = TransactionID(bytes: hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"))!

    static let request = hex("""
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    static let ipv4Response = hex("""
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    static let ipv6Response = hex("""
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)
}

@Suite struct CodecTests {
    @Test func decodesTheSampleRequest() throws {
        let message = try Message(decoding: RFC5769.request)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == RFC5769.transactionID)
        #expect(message.software == "STUN test client")
        #expect(message.username == "evtj:h6vY")
        #expect(message.attributes.contains(.other(type: 0x0024, value: hex("6e 00 01 ff"))))
        #expect(message.attributes.contains(.other(type: 0x8029, value: hex("93 2f f9 b1 51 26 3b 36"))))
        #expect(message.unknownComprehensionRequired == [0x0024])
        #expect(message.hasFingerprint)
        #expect(message.isAuthentic(RFC5769.request, key: RFC5769.password))
        #expect(!message.isAuthentic(RFC5769.request, key: Array("wrong".utf8)))
    }

    @Test func decodesTheIPv4Response() throws {
        let message = try Message(decoding: RFC5769.ipv4Response)
        #expect(message.type == .bindingSuccess)
        #expect(message.software == "test vector")
        #expect(message.mappedAddress == Endpoint("192.0.2.1:32853"))
        #expect(message.isAuthentic(RFC5769.ipv4Response, key: RFC5769.password))
    }

    @Test func decodesTheIPv6Response() throws {
        let message = try Message(decoding: RFC5769.ipv6Response)
        #expect(message.mappedAddress == Endpoint("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        #expect(message.isAuthentic(RFC5769.ipv6Response, key: RFC5769.password))
    }

    /// Re-encoding the vectors (with the RFC's space padding) reproduces them byte for byte,
    /// MESSAGE-INTEGRITY and FINGERPRINT included.
    @Test(arguments: [RFC5769.request, RFC5769.ipv4Response, RFC5769.ipv6Response])
    func reencodesTheVectorsExactly(_ vector: [UInt8]) throws {
        let message = try Message(decoding: vector)
        let encoded = message.encoded(integrityKey: RFC5769.password, fingerprint: true, paddingByte: 0x20)
        #expect(hexString(encoded) == hexString(vector))
    }

    @Test func messageTypeInterleavesClassBits() {
        #expect(MessageType.bindingRequest.rawValue == 0x0001)
        #expect(MessageType.bindingSuccess.rawValue == 0x0101)
        #expect(MessageType.bindingError.rawValue == 0x0111)
        #expect(MessageType.bindingIndication.rawValue == 0x0011)
        for raw in UInt16(0)..<0x4000 { #expect(MessageType(rawValue: raw).rawValue == raw) }
    }

    @Test func roundTripsEveryAttribute() throws {
        let id = TransactionID.random()
        let original = Message(type: .bindingError, transactionID: id, attributes: [
            .mappedAddress(Endpoint("198.51.100.9:1")!),
            .xorMappedAddress(Endpoint("[2001:db8::5]:65535")!),
            .xorMappedAddress(Endpoint("203.0.113.4:3478")!),
            .changeRequest(changeIP: true, changePort: false),
            .changeRequest(changeIP: false, changePort: true),
            .username("evtj:h6vY"),
            .responseOrigin(Endpoint("192.0.2.1:3478")!),
            .otherAddress(Endpoint("[2001:db8::2]:3479")!),
            .software("lanrage 0.1.0 ✓"),
            .errorCode(code: 420, reason: "Unknown Attribute"),
            .unknownAttributes([0x0024, 0x0025, 0x7FFF]),
            .other(type: 0x7000, value: [1, 2, 3, 4, 5]),
        ])
        for (key, fingerprint) in [(nil, false), (Array("secret".utf8), false), (nil, true), (Array("k".utf8), true)] {
            let bytes = original.encoded(integrityKey: key, fingerprint: fingerprint)
            #expect(bytes.count % 4 == 0)
            let decoded = try Message(decoding: bytes)
            var attributes = decoded.attributes
            if fingerprint { #expect(decoded.hasFingerprint); attributes.removeLast() }
            if let key {
                #expect(decoded.isAuthentic(bytes, key: key))
                guard case .messageIntegrity = attributes.removeLast() else { Issue.record("no integrity"); continue }
            }
            #expect(attributes == original.attributes)
            #expect(decoded.transactionID == id)
            #expect(decoded.type == .bindingError)
        }
    }

    @Test func bindingRequestIsTwentyBytesOrTwentyEight() {
        #expect(Message.bindingRequest().encoded().count == 20)
        let change = Message.bindingRequest(changeIP: true, changePort: true).encoded()
        #expect(change.count == 28)
        #expect(Array(change[20...]) == [0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0x06])
    }

    // MARK: Malformed input: a typed error each, never a trap.

    static let malformed: [(String, [UInt8], DecodingError)] = {
        let request = RFC5769.request
        var cases: [(String, [UInt8], DecodingError)] = [
            ("empty", [], .truncatedHeader(count: 0)),
            ("19 bytes", Array(request[..<19]), .truncatedHeader(count: 19)),
            ("leading bits", [0xC0] + Array(request[1...]), .notSTUN),
            ("cookie", Array(request[..<4]) + [0x21, 0x12, 0xA4, 0x43] + Array(request[8...]), .badMagicCookie(0x2112_A443)),
            ("odd length", hex("00 01 00 03 21 12 a4 42 000000000000000000000000 000000"), .lengthNotMultipleOfFour(3)),
            ("datagram cut", Array(request[..<100]), .lengthMismatch(declared: 88, actual: 80)),
            ("datagram extra", request + [0, 0, 0, 0], .lengthMismatch(declared: 88, actual: 92)),
            ("attribute runs past end", hex("00 01 00 08 21 12 a4 42 000000000000000000000000 8022 0010 41414141"),
             .truncatedAttribute(type: 0x8022, offset: 20)),
            ("v4 address too short", hex("01 01 00 0c 21 12 a4 42 000000000000000000000000 0020 0006 0001 0000 0000 0000"),
             .badAttributeLength(type: 0x0020, length: 6)),
            ("v6 with v4 length", hex("01 01 00 0c 21 12 a4 42 000000000000000000000000 0020 0008 0002 0000 00000000"),
             .badAttributeLength(type: 0x0020, length: 8)),
            ("bad family", hex("01 01 00 0c 21 12 a4 42 000000000000000000000000 0001 0008 0003 0000 00000000"),
             .badAddressFamily(type: 0x0001, family: 3)),
            ("short address", hex("01 01 00 08 21 12 a4 42 000000000000000000000000 802c 0002 0001 0000"),
             .badAttributeLength(type: 0x802C, length: 2)),
            ("change-request length", hex("00 01 00 08 21 12 a4 42 000000000000000000000000 0003 0002 0000 0000"),
             .badAttributeLength(type: 0x0003, length: 2)),
            ("bad utf8", hex("00 01 00 08 21 12 a4 42 000000000000000000000000 8022 0002 c328 0000"),
             .invalidUTF8(type: 0x8022)),
            ("error class", hex("01 11 00 08 21 12 a4 42 000000000000000000000000 0009 0004 0000 0701"),
             .badErrorCode(errorClass: 7, number: 1)),
            ("error number", hex("01 11 00 08 21 12 a4 42 000000000000000000000000 0009 0004 0000 0464"),
             .badErrorCode(errorClass: 4, number: 100)),
            ("integrity length", hex("00 01 00 08 21 12 a4 42 000000000000000000000000 0008 0004 00000000"),
             .badAttributeLength(type: 0x0008, length: 4)),
            ("unknown-attributes odd", hex("01 11 00 08 21 12 a4 42 000000000000000000000000 000a 0003 00240000"),
             .badAttributeLength(type: 0x000A, length: 3)),
        ]
        var badFingerprint = request
        badFingerprint[107] ^= 1
        cases.append(("fingerprint", badFingerprint, .badFingerprint(expected: 0xE57A_3BCF, found: 0xE57A_3BCE)))
        let fingerprinted = Message.bindingRequest(transactionID: RFC5769.transactionID).encoded(fingerprint: true)
        var after = fingerprinted + hex("8022 0000")
        after[3] = UInt8(after.count - 20)
        // The CRC still matches the bytes before FINGERPRINT (length field included in the CRC differs), so
        // recompute it to isolate the "attribute after FINGERPRINT" rule.
        let crc = CRC32.checksum(Array(after[..<20])) ^ 0x5354_554E
        after[24] = UInt8(crc >> 24); after[25] = UInt8(truncatingIfNeeded: crc >> 16)
        after[26] = UInt8(truncatingIfNeeded: crc >> 8); after[27] = UInt8(truncatingIfNeeded: crc)
        cases.append(("after fingerprint", after, .attributeAfterFingerprint(type: 0x8022)))
        return cases
    }()

    @Test(arguments: malformed)
    func rejectsMalformedInput(_ name: String, _ bytes: [UInt8], _ expected: DecodingError) {
        #expect(throws: expected, "\(name)") { try Message(decoding: bytes) }
    }

    @Test func ignoresAttributesAfterIntegrityButStillChecksThem() throws {
        var message = Message.bindingRequest()
        message.attributes.append(.software("x"))
        var bytes = message.encoded(integrityKey: [1, 2, 3])
        bytes += hex("8022 0001 79000000")
        bytes[3] = UInt8(bytes.count - 20)
        let decoded = try Message(decoding: bytes)
        #expect(decoded.software == "x")
        #expect(decoded.attributes.count == 2)
        #expect(decoded.isAuthentic(bytes, key: [1, 2, 3]))
    }

    /// Every truncation and every single-byte corruption of valid messages decodes or fails with
    /// a typed error (a trap would crash the test process).
    @Test func survivesTruncationAndCorruption() {
        var generator = SystemRandomNumberGenerator()
        for vector in [RFC5769.request, RFC5769.ipv4Response, RFC5769.ipv6Response] {
            for length in 0...vector.count { _ = try? Message(decoding: Array(vector[..<length])) }
            for index in vector.indices {
                for _ in 0..<8 {
                    var copy = vector
                    copy[index] = UInt8.random(in: 0...255, using: &generator)
                    _ = try? Message(decoding: copy)
                }
            }
        }
        for _ in 0..<20_000 {
            var random = [UInt8](repeating: 0, count: Int.random(in: 20...120, using: &generator))
            for index in random.indices { random[index] = UInt8.random(in: 0...255, using: &generator) }
            random[0] &= 0x3F
            random.replaceSubrange(4..<8, with: [0x21, 0x12, 0xA4, 0x42])
            random[2] = 0; random[3] = UInt8(truncatingIfNeeded: random.count - 20)
            _ = try? Message(decoding: random)
        }
    }
}
