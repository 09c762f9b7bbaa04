import Net

/// Why bytes are not an acceptable STUN message. Every malformed input maps to one of these.
public enum DecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the 20-byte header.
    case truncatedHeader(count: Int)
    /// The two leading bits are not zero: not a STUN message (RTP, DTLS, WireGuard …).
    case notSTUN
    case badMagicCookie(UInt32)
    /// The header's length is not a multiple of four.
    case lengthNotMultipleOfFour(Int)
    /// The header's length disagrees with the datagram's size.
    case lengthMismatch(declared: Int, actual: Int)
    /// An attribute header or value runs past the end of the message.
    case truncatedAttribute(type: UInt16, offset: Int)
    /// An attribute whose length is wrong for its type.
    case badAttributeLength(type: UInt16, length: Int)
    /// An address attribute with a family other than 0x01 (IPv4) or 0x02 (IPv6).
    case badAddressFamily(type: UInt16, family: UInt8)
    /// A text attribute that is not UTF-8.
    case invalidUTF8(type: UInt16)
    /// ERROR-CODE with a class outside 3…6 or a number above 99.
    case badErrorCode(errorClass: UInt8, number: UInt8)
    /// FINGERPRINT does not match the CRC-32 of the message.
    case badFingerprint(expected: UInt32, found: UInt32)
    /// An attribute after FINGERPRINT, which must be last.
    case attributeAfterFingerprint(type: UInt16)

    public var description: String {
        func hex(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }
        switch self {
        case .truncatedHeader(let count): return "truncated STUN header (\(count) bytes, need 20)"
        case .notSTUN: return "not a STUN message (leading bits not zero)"
        case .badMagicCookie(let cookie): return "bad magic cookie \(hex(cookie))"
        case .lengthNotMultipleOfFour(let length): return "message length \(length) is not a multiple of 4"
        case .lengthMismatch(let declared, let actual): return "message length \(declared) but \(actual) bytes follow the header"
        case .truncatedAttribute(let type, let offset): return "attribute \(hex(type)) at offset \(offset) runs past the end"
        case .badAttributeLength(let type, let length): return "attribute \(hex(type)) has bad length \(length)"
        case .badAddressFamily(let type, let family): return "attribute \(hex(type)) has bad address family \(hex(family))"
        case .invalidUTF8(let type): return "attribute \(hex(type)) is not UTF-8"
        case .badErrorCode(let errorClass, let number): return "bad ERROR-CODE class \(errorClass) number \(number)"
        case .badFingerprint(let expected, let found): return "bad FINGERPRINT \(hex(found)), expected \(hex(expected))"
        case .attributeAfterFingerprint(let type): return "attribute \(hex(type)) after FINGERPRINT"
        }
    }
}

extension Message {
    /// Decodes one datagram. Untrusted input: every failure is a `DecodingError`, nothing traps.
    /// With `allowingClassic`, a message without the magic cookie is taken as RFC 3489 classic STUN
    /// (its first four id bytes kept in `classicCookie`) instead of being rejected; servers use this.
    public init(decoding bytes: [UInt8], allowingClassic: Bool = false) throws(DecodingError) {
        let result: Result<Message, DecodingError> = bytes.withUnsafeBytes { buffer in
            do throws(DecodingError) { return .success(try Message(decoding: buffer, allowingClassic: allowingClassic)) } catch { return .failure(error) }
        }
        self = try result.get()
    }

    /// Whether `bytes` could be a STUN message (first byte's two top bits zero, magic cookie present):
    /// the cheap demultiplexing test of RFC 8489 §5.
    public static func looksLikeSTUN(_ buffer: UnsafeRawBufferPointer) -> Bool {
        buffer.count >= 20 && buffer[0] & 0xC0 == 0 && load32(buffer, 4) == magicCookie
    }

    public init(decoding buffer: UnsafeRawBufferPointer, allowingClassic: Bool = false) throws(DecodingError) {
        guard buffer.count >= 20 else { throw .truncatedHeader(count: buffer.count) }
        let rawType = load16(buffer, 0)
        guard rawType & 0xC000 == 0 else { throw .notSTUN }
        let length = Int(load16(buffer, 2))
        let cookie = load32(buffer, 4)
        guard cookie == magicCookie || allowingClassic else { throw .badMagicCookie(cookie) }
        guard length % 4 == 0 else { throw .lengthNotMultipleOfFour(length) }
        guard length == buffer.count - 20 else { throw .lengthMismatch(declared: length, actual: buffer.count - 20) }
        let id = TransactionID(high: load32(buffer, 8), low: UInt64(load32(buffer, 12)) << 32 | UInt64(load32(buffer, 16)))
        self.init(type: MessageType(rawValue: rawType), transactionID: id)
        if cookie != magicCookie { classicCookie = cookie }
        // One allocation for the attribute list (an attribute takes at least 4 bytes; most messages have few).
        attributes.reserveCapacity(min(length / 4, 8))

        var offset = 20
        var afterIntegrity = false
        while offset < buffer.count {
            guard offset + 4 <= buffer.count else { throw .truncatedAttribute(type: 0, offset: offset) }
            let type = load16(buffer, offset)
            let valueLength = Int(load16(buffer, offset + 2))
            let valueStart = offset + 4
            guard valueStart + valueLength <= buffer.count else { throw .truncatedAttribute(type: type, offset: offset) }
            let value = UnsafeRawBufferPointer(rebasing: buffer[valueStart..<(valueStart + valueLength)])
            let next = valueStart + (valueLength + 3) & ~3
            if hasFingerprint { throw .attributeAfterFingerprint(type: type) }

            if type == AttributeType.fingerprint {
                guard valueLength == 4 else { throw .badAttributeLength(type: type, length: valueLength) }
                let found = load32(value, 0)
                let expected = CRC32.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<offset])) ^ 0x5354_554E
                guard found == expected else { throw .badFingerprint(expected: expected, found: found) }
                attributes.append(.fingerprint(found))
                hasFingerprint = true
            } else if afterIntegrity {
                // RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY, other than FINGERPRINT, are ignored.
            } else {
                let attribute = try Message.decodeAttribute(type: type, value: value, transactionID: id)
                if case .messageIntegrity = attribute {
                    integrityOffset = offset
                    afterIntegrity = true
                }
                attributes.append(attribute)
            }
            offset = next
        }
        guard offset == buffer.count else { throw .truncatedAttribute(type: 0, offset: offset) }
    }

    private static func decodeAttribute(
        type: UInt16, value: UnsafeRawBufferPointer, transactionID: TransactionID
    ) throws(DecodingError) -> Attribute {
        switch type {
        case AttributeType.mappedAddress:
            return .mappedAddress(try decodeAddress(type: type, value, xor: nil))
        case AttributeType.xorMappedAddress:
            return .xorMappedAddress(try decodeAddress(type: type, value, xor: transactionID))
        case AttributeType.responseOrigin:
            return .responseOrigin(try decodeAddress(type: type, value, xor: nil))
        case AttributeType.otherAddress:
            return .otherAddress(try decodeAddress(type: type, value, xor: nil))
        case AttributeType.sourceAddress:
            return .sourceAddress(try decodeAddress(type: type, value, xor: nil))
        case AttributeType.changedAddress:
            return .changedAddress(try decodeAddress(type: type, value, xor: nil))
        case AttributeType.changeRequest:
            guard value.count == 4 else { throw .badAttributeLength(type: type, length: value.count) }
            let flags = load32(value, 0)
            return .changeRequest(changeIP: flags & 0x4 != 0, changePort: flags & 0x2 != 0)
        case AttributeType.username:
            guard value.count <= 513 else { throw .badAttributeLength(type: type, length: value.count) }
            return .username(try decodeText(type: type, value))
        case AttributeType.software:
            guard value.count <= 763 else { throw .badAttributeLength(type: type, length: value.count) }
            return .software(try decodeText(type: type, value))
        case AttributeType.errorCode:
            guard value.count >= 4, value.count <= 4 + 763 else { throw .badAttributeLength(type: type, length: value.count) }
            let errorClass = value[2] & 0x07, number = value[3]
            guard (3...6).contains(errorClass), number <= 99 else { throw .badErrorCode(errorClass: errorClass, number: number) }
            let reason = try decodeText(type: type, UnsafeRawBufferPointer(rebasing: value[4...]))
            return .errorCode(code: Int(errorClass) * 100 + Int(number), reason: reason)
        case AttributeType.unknownAttributes:
            guard value.count % 2 == 0 else { throw .badAttributeLength(type: type, length: value.count) }
            return .unknownAttributes(stride(from: 0, to: value.count, by: 2).map { load16(value, $0) })
        case AttributeType.messageIntegrity:
            guard value.count == 20 else { throw .badAttributeLength(type: type, length: value.count) }
            return .messageIntegrity(Array(value))
        default:
            return .other(type: type, value: Array(value))
        }
    }

    private static func decodeAddress(
        type: UInt16, _ value: UnsafeRawBufferPointer, xor id: TransactionID?
    ) throws(DecodingError) -> Endpoint {
        guard value.count >= 4 else { throw .badAttributeLength(type: type, length: value.count) }
        let family = value[1]
        var port = load16(value, 2)
        if id != nil { port ^= UInt16(magicCookie >> 16) }
        switch family {
        case 0x01:
            guard value.count == 8 else { throw .badAttributeLength(type: type, length: value.count) }
            var address = load32(value, 4)
            if id != nil { address ^= magicCookie }
            return Endpoint(.v4(IPv4Address(address)), port)
        case 0x02:
            guard value.count == 20 else { throw .badAttributeLength(type: type, length: value.count) }
            var bytes = Array(UnsafeRawBufferPointer(rebasing: value[4..<20]))
            if let id {
                let mask = xorMask(id)
                for index in 0..<16 { bytes[index] ^= mask[index] }
            }
            guard let v6 = IPv6Address(bytes: bytes) else { throw .badAttributeLength(type: type, length: value.count) }
            return Endpoint(.v6(v6), port)
        default:
            throw .badAddressFamily(type: type, family: family)
        }
    }

    private static func decodeText(type: UInt16, _ value: UnsafeRawBufferPointer) throws(DecodingError) -> String {
        // Contiguous UTF-8 code units take the standard library's fast validating path.
        guard let text = String(validating: value.assumingMemoryBound(to: UInt8.self), as: UTF8.self) else {
            throw .invalidUTF8(type: type)
        }
        return text
    }

    /// Whether MESSAGE-INTEGRITY verifies with `key` over the bytes this message was decoded from
    /// (RFC 8489 §14.5: the HMAC covers the message up to the attribute, with the length adjusted).
    /// Compares in constant time.
    public func isAuthentic(_ bytes: [UInt8], key: [UInt8]) -> Bool {
        guard let offset = integrityOffset, offset + 24 <= bytes.count, offset >= 20 else { return false }
        var covered = Array(bytes[0..<offset])
        setLength(offset - 20 + 24, in: &covered)
        let expected = HMACSHA1.authenticationCode(key: key, message: covered)
        var difference: UInt8 = 0
        for index in 0..<20 { difference |= expected[index] ^ bytes[offset + 4 + index] }
        return difference == 0
    }
}

@inline(__always) func load16(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
    UInt16(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

@inline(__always) func load32(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}
