import Net

/// The STUN magic cookie (RFC 8489 §5).
public let magicCookie: UInt32 = 0x2112_A442

/// A STUN message class (RFC 8489 §5).
public enum MessageClass: UInt8, Sendable, CaseIterable {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11
}

/// A STUN message type: a 12-bit method and a class, interleaved on the wire.
public struct MessageType: Hashable, Sendable, CustomStringConvertible {
    public var method: UInt16
    public var messageClass: MessageClass

    public static let bindingMethod: UInt16 = 0x001
    public static let bindingRequest = MessageType(method: bindingMethod, class: .request)
    public static let bindingSuccess = MessageType(method: bindingMethod, class: .successResponse)
    public static let bindingError = MessageType(method: bindingMethod, class: .errorResponse)
    public static let bindingIndication = MessageType(method: bindingMethod, class: .indication)

    public init(method: UInt16, class messageClass: MessageClass) {
        self.method = method & 0x0FFF
        self.messageClass = messageClass
    }

    /// The 14-bit wire value: M11..M7 C1 M6..M4 C0 M3..M0.
    public var rawValue: UInt16 {
        let c = UInt16(messageClass.rawValue)
        return (method & 0x0F80) << 2 | (c & 0b10) << 7 | (method & 0x0070) << 1 | (c & 0b01) << 4 | (method & 0x000F)
    }

    public init(rawValue: UInt16) {
        method = (rawValue & 0x3E00) >> 2 | (rawValue & 0x00E0) >> 1 | (rawValue & 0x000F)
        messageClass = MessageClass(rawValue: UInt8((rawValue & 0x0100) >> 7 | (rawValue & 0x0010) >> 4))!
    }

    public var description: String {
        let name = method == MessageType.bindingMethod ? "binding" : "method 0x\(String(method, radix: 16))"
        switch messageClass {
        case .request: return "\(name) request"
        case .indication: return "\(name) indication"
        case .successResponse: return "\(name) success response"
        case .errorResponse: return "\(name) error response"
        }
    }
}

/// Attribute type numbers (RFC 8489 §18.3, RFC 5780 §7).
public enum AttributeType {
    public static let mappedAddress: UInt16 = 0x0001
    public static let changeRequest: UInt16 = 0x0003
    /// RFC 3489 only (classic STUN), answered to classic clients.
    public static let sourceAddress: UInt16 = 0x0004
    /// RFC 3489 only (classic STUN): the server's other address, as OTHER-ADDRESS is in RFC 5780.
    public static let changedAddress: UInt16 = 0x0005
    public static let username: UInt16 = 0x0006
    public static let messageIntegrity: UInt16 = 0x0008
    public static let errorCode: UInt16 = 0x0009
    public static let unknownAttributes: UInt16 = 0x000A
    public static let xorMappedAddress: UInt16 = 0x0020
    public static let software: UInt16 = 0x8022
    public static let fingerprint: UInt16 = 0x8028
    public static let responseOrigin: UInt16 = 0x802B
    public static let otherAddress: UInt16 = 0x802C

    /// Types below 0x8000 must be understood by the receiver (RFC 8489 §14).
    public static func isComprehensionRequired(_ type: UInt16) -> Bool { type < 0x8000 }
}

/// One STUN attribute, decoded.
public enum Attribute: Equatable, Sendable {
    case mappedAddress(Endpoint)
    case xorMappedAddress(Endpoint)
    /// RFC 5780 §7.2: ask the server to answer from its other IP and/or port.
    case changeRequest(changeIP: Bool, changePort: Bool)
    /// RFC 3489 SOURCE-ADDRESS (classic STUN).
    case sourceAddress(Endpoint)
    /// RFC 3489 CHANGED-ADDRESS (classic STUN).
    case changedAddress(Endpoint)
    case username(String)
    /// RFC 5780 §7.3: the address the response was sent from.
    case responseOrigin(Endpoint)
    /// RFC 5780 §7.4: the server's alternate address (its other IP and port).
    case otherAddress(Endpoint)
    case software(String)
    case errorCode(code: Int, reason: String)
    case unknownAttributes([UInt16])
    /// The 20-byte HMAC-SHA1; the encoder computes it, the decoder keeps what it read.
    case messageIntegrity([UInt8])
    /// The CRC-32 XOR 0x5354554E; the encoder computes it, the decoder checks it.
    case fingerprint(UInt32)
    /// An attribute this codec does not interpret, kept as bytes.
    case other(type: UInt16, value: [UInt8])

    public var type: UInt16 {
        switch self {
        case .mappedAddress: AttributeType.mappedAddress
        case .xorMappedAddress: AttributeType.xorMappedAddress
        case .changeRequest: AttributeType.changeRequest
        case .sourceAddress: AttributeType.sourceAddress
        case .changedAddress: AttributeType.changedAddress
        case .username: AttributeType.username
        case .responseOrigin: AttributeType.responseOrigin
        case .otherAddress: AttributeType.otherAddress
        case .software: AttributeType.software
        case .errorCode: AttributeType.errorCode
        case .unknownAttributes: AttributeType.unknownAttributes
        case .messageIntegrity: AttributeType.messageIntegrity
        case .fingerprint: AttributeType.fingerprint
        case .other(let type, _): type
        }
    }
}

/// A STUN message: type, transaction id and attributes in order.
public struct Message: Equatable, Sendable {
    public var type: MessageType
    public var transactionID: TransactionID
    public var attributes: [Attribute]
    /// Where MESSAGE-INTEGRITY starts in the decoded bytes, for `isAuthentic(_:key:)`; `nil` when absent
    /// or when the message was built rather than decoded.
    public internal(set) var integrityOffset: Int?
    /// Whether the decoded message carried a FINGERPRINT (the decoder has checked it).
    public internal(set) var hasFingerprint = false
    /// For an RFC 3489 (classic) message, the first four bytes of its 128-bit transaction id, which
    /// stand where the magic cookie is; `nil` for RFC 5389/8489 messages.
    public var classicCookie: UInt32?

    public init(type: MessageType, transactionID: TransactionID, attributes: [Attribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    /// A binding request with a fresh transaction id.
    public static func bindingRequest(
        transactionID: TransactionID = .random(), changeIP: Bool = false, changePort: Bool = false
    ) -> Message {
        var message = Message(type: .bindingRequest, transactionID: transactionID)
        if changeIP || changePort { message.attributes.append(.changeRequest(changeIP: changeIP, changePort: changePort)) }
        return message
    }

    // MARK: Accessors

    /// The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489 servers).
    public var mappedAddress: Endpoint? {
        var plain: Endpoint?
        for attribute in attributes {
            switch attribute {
            case .xorMappedAddress(let endpoint): return endpoint
            case .mappedAddress(let endpoint): plain = plain ?? endpoint
            default: continue
            }
        }
        return plain
    }

    /// OTHER-ADDRESS, or CHANGED-ADDRESS from an RFC 3489 server.
    public var otherAddress: Endpoint? {
        var changed: Endpoint?
        for attribute in attributes {
            switch attribute {
            case .otherAddress(let endpoint): return endpoint
            case .changedAddress(let endpoint): changed = changed ?? endpoint
            default: continue
            }
        }
        return changed
    }

    public var responseOrigin: Endpoint? {
        for case .responseOrigin(let endpoint) in attributes { return endpoint }
        return nil
    }

    public var changeRequest: (changeIP: Bool, changePort: Bool)? {
        for case .changeRequest(let ip, let port) in attributes { return (ip, port) }
        return nil
    }

    public var software: String? {
        for case .software(let text) in attributes { return text }
        return nil
    }

    public var username: String? {
        for case .username(let text) in attributes { return text }
        return nil
    }

    public var errorCode: (code: Int, reason: String)? {
        for case .errorCode(let code, let reason) in attributes { return (code, reason) }
        return nil
    }

    /// Comprehension-required attributes this codec does not understand (for a 420 answer).
    public var unknownComprehensionRequired: [UInt16] {
        attributes.compactMap { attribute in
            if case .other(let type, _) = attribute, AttributeType.isComprehensionRequired(type) { return type }
            return nil
        }
    }
}
