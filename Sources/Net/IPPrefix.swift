/// An address prefix in CIDR notation: `100.64.0.1/32`, `2001:db8::/64`.
/// The address is kept as written (host bits are not cleared), as WireGuard and `ip` accept it.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var length: UInt8

    /// A prefix; `nil` when `length` exceeds the family's bit count.
    public init?(_ address: IPAddress, _ length: UInt8) {
        guard length <= address.bitCount else { return nil }
        self.address = address
        self.length = length
    }

    /// Parses `ADDRESS/LENGTH`, or a bare address as a host prefix (/32 or /128).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        if parts.count == 1 {
            self.init(address, address.bitCount)
            return
        }
        let lengthText = parts[1]
        guard (1...3).contains(lengthText.count), lengthText.utf8.allSatisfy({ $0.isASCIIDigit }),
              let length = UInt8(lengthText)
        else { return nil }
        self.init(address, length)
    }

    /// The prefix with its host bits cleared: `100.64.0.7/24` → `100.64.0.0/24`.
    public var network: IPPrefix {
        var bytes = address.bytes
        for index in bytes.indices {
            let bitsBefore = index * 8
            if bitsBefore >= Int(length) {
                bytes[index] = 0
            } else if bitsBefore + 8 > Int(length) {
                bytes[index] &= UInt8(truncatingIfNeeded: 0xFF << (8 - (Int(length) - bitsBefore)))
            }
        }
        return IPPrefix(IPAddress(bytes: bytes)!, length)!
    }

    /// Whether every address of `other` lies inside this prefix.
    public func contains(_ other: IPPrefix) -> Bool {
        guard other.address.family == address.family, other.length >= length else { return false }
        return IPPrefix(other.address, length)!.network == network
    }

    public var description: String { "\(address)/\(length)" }
}

extension IPAddress {
    /// 32 for IPv4, 128 for IPv6.
    public var bitCount: UInt8 {
        switch self {
        case .v4: 32
        case .v6: 128
        }
    }

    /// The address bytes in network order (4 or 16).
    public var bytes: [UInt8] {
        switch self {
        case .v4(let address): address.bytes
        case .v6(let address): address.bytes
        }
    }

    /// An address from 4 or 16 bytes in network order; `nil` for any other count.
    public init?(bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        switch array.count {
        case 4: self = .v4(IPv4Address(array[0], array[1], array[2], array[3]))
        case 16: self = .v6(IPv6Address(bytes: array)!)
        default: return nil
        }
    }
}
