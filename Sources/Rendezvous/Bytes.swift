import Net

/// Big-endian writing into a byte array.
public struct ByteWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { bytes.append(UInt8(value >> 8)); bytes.append(UInt8(truncatingIfNeeded: value)) }
    public mutating func u64(_ value: UInt64) { ByteWriter.append(value, to: &bytes) }
    public mutating func raw(_ value: some Collection<UInt8>) { bytes.append(contentsOf: value) }

    public static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    /// An endpoint: family (4 or 6), address (4 or 16 bytes), port.
    public mutating func endpoint(_ endpoint: Endpoint) {
        switch endpoint.address {
        case .v4(let v4): u8(4); raw(v4.bytes)
        case .v6(let v6): u8(6); raw(v6.bytes)
        }
        u16(endpoint.port)
    }
}

/// Big-endian reading with bounds checks: every read past the end throws, nothing traps.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func u8() throws(WireError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() throws(WireError) -> UInt16 {
        guard remaining >= 2 else { throw .truncated }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    public mutating func u64() throws(WireError) -> UInt64 {
        guard remaining >= 8 else { throw .truncated }
        var value: UInt64 = 0
        for index in 0..<8 { value = value << 8 | UInt64(bytes[offset + index]) }
        offset += 8
        return value
    }

    public mutating func raw(_ count: Int) throws(WireError) -> [UInt8] {
        guard count >= 0, remaining >= count else { throw .truncated }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    public mutating func endpoint() throws(WireError) -> Endpoint {
        let family = try u8()
        let address: IPAddress
        switch family {
        case 4:
            let b = try raw(4)
            address = .v4(IPv4Address(b[0], b[1], b[2], b[3]))
        case 6:
            guard let v6 = IPv6Address(bytes: try raw(16)) else { throw .malformed }
            address = .v6(v6)
        default:
            throw .malformed
        }
        return Endpoint(address, try u16())
    }
}

/// Why a datagram was not accepted. Each reason has a counter on the servers.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncated
    case oversized
    case badMagic
    case badVersion
    case malformed
    case unknownType
    case unauthenticated
    case replayed
    case expired

    public var description: String {
        switch self {
        case .truncated: "truncated"
        case .oversized: "oversized"
        case .badMagic: "not a LANrage message"
        case .badVersion: "unsupported version"
        case .malformed: "malformed"
        case .unknownType: "unknown type"
        case .unauthenticated: "unauthenticated"
        case .replayed: "replayed"
        case .expired: "expired"
        }
    }
}
