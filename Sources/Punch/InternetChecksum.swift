import Net

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit words.
public enum InternetChecksum {
    /// The ones' complement sum of `bytes` as big-endian 16-bit words (an odd last byte padded
    /// with zero), folded to 16 bits, added to `initial`.
    public static func sum(_ bytes: some Collection<UInt8>, initial: UInt32 = 0) -> UInt32 {
        var total = initial
        var high: UInt8?
        for byte in bytes {
            if let first = high {
                total &+= UInt32(first) << 8 | UInt32(byte)
                high = nil
            } else {
                high = byte
            }
        }
        if let last = high { total &+= UInt32(last) << 8 }
        while total > 0xFFFF { total = (total & 0xFFFF) &+ (total >> 16) }
        return total
    }

    /// The checksum of `bytes` (the complement of their sum).
    public static func checksum(_ bytes: some Collection<UInt8>, initial: UInt32 = 0) -> UInt16 {
        ~UInt16(sum(bytes, initial: initial))
    }

    /// The UDP checksum over the IPv4 pseudo-header and `datagram` (UDP header with a zero
    /// checksum field, then the payload). Zero is sent as 0xFFFF, as RFC 768 requires.
    public static func udp(source: IPv4Address, destination: IPv4Address, datagram: [UInt8]) -> UInt16 {
        let pseudo = source.bytes + destination.bytes + [0, 17, UInt8(datagram.count >> 8), UInt8(datagram.count & 0xFF)]
        let value = checksum(datagram, initial: sum(pseudo))
        return value == 0 ? 0xFFFF : value
    }
}
