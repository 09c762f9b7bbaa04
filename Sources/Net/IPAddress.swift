import CLinux

/// An IPv4 or IPv6 address, stored in network byte order.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses dotted-quad IPv4 or RFC 5952 IPv6 text; `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        if let v4 = IPv4Address(text) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }

    /// The address family constant (`AF_INET` or `AF_INET6`).
    public var family: Int32 {
        switch self {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }

    /// The unspecified address of `family` (`0.0.0.0`, or `::` for `AF_INET6`): a socket bound to
    /// it takes any local address of the family.
    public static func unspecified(_ family: Int32) -> IPAddress {
        family == AF_INET6 ? .v6(IPv6Address(bytes: [UInt8](repeating: 0, count: 16))!) : .v4(IPv4Address(0))
    }
}

/// An IPv4 address.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The address as a host-order integer (192.0.2.1 is 0xC000_0201).
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses strict dotted-quad text ("192.0.2.1"): four decimal parts, no leading zeros.
    /// Works on the UTF-8 bytes: configurations with thousands of addresses parse fast.
    public init?(_ text: some StringProtocol) {
        var value: UInt32 = 0, part: UInt32 = 0, digits = 0, dots = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if digits == 1, part == 0 { return nil }   // a leading zero
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, part <= 255 else { return nil }
            case UInt8(ascii: "."):
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | part
                part = 0
                digits = 0
                dots += 1
            default:
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        self.value = value << 8 | part
    }

    public var octets: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value))
    }

    /// The four bytes in network order.
    public var bytes: [UInt8] { [octets.0, octets.1, octets.2, octets.3] }

    public var description: String {
        let o = octets
        return "\(o.0).\(o.1).\(o.2).\(o.3)"
    }
}

/// An IPv6 address.
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    /// The sixteen bytes in network order.
    public var bytes: [UInt8]


    /// An address from exactly sixteen bytes in network order.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses IPv6 text ("2001:db8::1"); an embedded IPv4 tail and zone ids are not accepted.
    /// Works on the UTF-8 bytes, in one pass.
    public init?(_ text: some StringProtocol) {
        let text = Array(text.utf8)
        let colon = UInt8(ascii: ":")
        guard text.count >= 2, text.count <= 39, text.contains(colon) else { return nil }
        func hexValue(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
            default: nil
            }
        }
        var head: [UInt16] = [], tail: [UInt16] = []
        var compressed = false
        var index = 0
        if text[0] == colon {
            guard text[1] == colon else { return nil }
            compressed = true
            index = 2
        }
        while index < text.count {
            var group: UInt32 = 0, digits = 0
            while index < text.count, let digit = hexValue(text[index]) {
                group = group << 4 | digit
                digits += 1
                index += 1
                guard digits <= 4 else { return nil }
            }
            guard digits > 0 else { return nil }
            if compressed { tail.append(UInt16(group)) } else { head.append(UInt16(group)) }
            if index == text.count { break }
            guard text[index] == colon else { return nil }
            index += 1
            if index < text.count, text[index] == colon {
                guard !compressed else { return nil }   // "::" at most once
                compressed = true
                index += 1
            } else if index == text.count {
                return nil                              // a trailing single ":"
            }
        }
        let count = head.count + tail.count
        guard compressed ? count <= 7 : count == 8 else { return nil }
        let all = head + Array(repeating: 0, count: 8 - count) + tail
        bytes = all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// Whether a peer beyond this link can reach the address: global unicast (2000::/3) or
    /// unique local (fc00::/7) — not link-local, loopback, multicast or IPv4-mapped.
    public var isRoutable: Bool { isGlobal || bytes[0] & 0xFE == 0xFC }

    /// Whether the address is global unicast (2000::/3): reachable from anywhere on the Internet.
    public var isGlobal: Bool { bytes[0] & 0xE0 == 0x20 }

    /// RFC 5952 text: lower case, the longest run of two or more zero groups shortened to `::`.
    public var description: String {
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        var bestStart = -1, bestLength = 1, start = -1
        for index in 0...8 {
            if index < 8, groups[index] == 0 {
                if start < 0 { start = index }
            } else if start >= 0 {
                if index - start > bestLength { bestStart = start; bestLength = index - start }
                start = -1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
        }
        guard bestStart >= 0 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}
