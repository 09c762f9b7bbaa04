import Net

extension Message {
    /// The message on the wire. Any `.messageIntegrity`/`.fingerprint` in `attributes` is ignored:
    /// MESSAGE-INTEGRITY is computed with `integrityKey` (short-term credential: the password's bytes)
    /// and FINGERPRINT appended last when `fingerprint` is true (RFC 8489 §14.5, §14.7).
    /// `paddingByte` is 0 as RFC 8489 says; the RFC 5769 vectors were made with spaces.
    public func encoded(integrityKey: [UInt8]? = nil, fingerprint: Bool = false, paddingByte: UInt8 = 0) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        appendUInt16(type.rawValue, to: &out)
        appendUInt16(0, to: &out) // length, patched below
        appendUInt32(classicCookie ?? magicCookie, to: &out)
        appendUInt32(transactionID.high, to: &out)
        appendUInt32(UInt32(truncatingIfNeeded: transactionID.low >> 32), to: &out)
        appendUInt32(UInt32(truncatingIfNeeded: transactionID.low), to: &out)
        for attribute in attributes {
            switch attribute {
            case .messageIntegrity, .fingerprint: continue
            default: encode(attribute, to: &out, paddingByte: paddingByte)
            }
        }
        if let integrityKey {
            setLength(out.count - 20 + 24, in: &out)
            let code = HMACSHA1.authenticationCode(key: integrityKey, message: out)
            appendUInt16(AttributeType.messageIntegrity, to: &out)
            appendUInt16(20, to: &out)
            out += code
        }
        if fingerprint {
            setLength(out.count - 20 + 8, in: &out)
            let crc = CRC32.checksum(out) ^ 0x5354_554E
            appendUInt16(AttributeType.fingerprint, to: &out)
            appendUInt16(4, to: &out)
            appendUInt32(crc, to: &out)
        }
        setLength(out.count - 20, in: &out)
        return out
    }

    private func encode(_ attribute: Attribute, to out: inout [UInt8], paddingByte: UInt8) {
        let start = out.count
        appendUInt16(attribute.type, to: &out)
        appendUInt16(0, to: &out)
        switch attribute {
        case .mappedAddress(let endpoint), .responseOrigin(let endpoint), .otherAddress(let endpoint),
             .sourceAddress(let endpoint), .changedAddress(let endpoint):
            appendAddress(endpoint, xor: false, to: &out)
        case .xorMappedAddress(let endpoint):
            appendAddress(endpoint, xor: true, to: &out)
        case .changeRequest(let changeIP, let changePort):
            appendUInt32((changeIP ? 0x4 : 0) | (changePort ? 0x2 : 0), to: &out)
        case .username(let text), .software(let text):
            out.append(contentsOf: text.utf8)
        case .errorCode(let code, let reason):
            let clamped = min(max(code, 300), 699)
            out += [0, 0, UInt8(clamped / 100), UInt8(clamped % 100)]
            out.append(contentsOf: reason.utf8)
        case .unknownAttributes(let types):
            for type in types { appendUInt16(type, to: &out) }
        case .other(_, let value):
            out += value
        case .messageIntegrity, .fingerprint:
            break
        }
        let length = out.count - start - 4
        out[start + 2] = UInt8(truncatingIfNeeded: length >> 8)
        out[start + 3] = UInt8(truncatingIfNeeded: length)
        while out.count % 4 != 0 { out.append(paddingByte) }
    }

    private func appendAddress(_ endpoint: Endpoint, xor: Bool, to out: inout [UInt8]) {
        let port = xor ? endpoint.port ^ UInt16(magicCookie >> 16) : endpoint.port
        switch endpoint.address {
        case .v4(let v4):
            out += [0, 0x01]
            appendUInt16(port, to: &out)
            appendUInt32(xor ? v4.value ^ magicCookie : v4.value, to: &out)
        case .v6(let v6):
            out += [0, 0x02]
            appendUInt16(port, to: &out)
            if xor {
                let mask = xorMask(transactionID)
                for index in 0..<16 { out.append(v6.bytes[index] ^ mask[index]) }
            } else {
                out += v6.bytes
            }
        }
    }
}

/// Cookie followed by the transaction id: the XOR mask for IPv6 addresses.
func xorMask(_ id: TransactionID) -> [UInt8] {
    [0x21, 0x12, 0xA4, 0x42] + id.bytes
}

@inline(__always) func appendUInt16(_ value: UInt16, to out: inout [UInt8]) {
    out.append(UInt8(truncatingIfNeeded: value >> 8))
    out.append(UInt8(truncatingIfNeeded: value))
}

@inline(__always) func appendUInt32(_ value: UInt32, to out: inout [UInt8]) {
    out.append(UInt8(truncatingIfNeeded: value >> 24))
    out.append(UInt8(truncatingIfNeeded: value >> 16))
    out.append(UInt8(truncatingIfNeeded: value >> 8))
    out.append(UInt8(truncatingIfNeeded: value))
}

@inline(__always) func setLength(_ length: Int, in out: inout [UInt8]) {
    out[2] = UInt8(truncatingIfNeeded: length >> 8)
    out[3] = UInt8(truncatingIfNeeded: length)
}
