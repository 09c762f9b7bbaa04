import Foundation
import Net

/// Sends UDP datagrams with any IPv4 source address and port, from inside a lab namespace: a raw
/// socket that writes the IP header itself (`IPPROTO_RAW`; the kernel fills in the header's
/// checksum, the UDP checksum is left zero, which IPv4 allows). The attacker's tool in the lab's
/// attack tests; only lab addresses are ever used.
public final class Spoofer: @unchecked Sendable {
    private let descriptor: Int32
    private var packet = [UInt8](repeating: 0, count: 1500)

    public init(in namespace: Namespace) throws {
        descriptor = try namespace.inside {
            let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW))
            guard fd >= 0 else { throw SystemError("socket", "AF_INET/SOCK_RAW/IPPROTO_RAW") }
            return fd
        }
    }

    deinit { close(descriptor) }

    /// Sends `payload` from `source` to `destination` (both IPv4); false when the kernel refused it.
    @discardableResult
    public func send(_ payload: [UInt8], from source: Endpoint, to destination: Endpoint) -> Bool {
        guard case .v4(let from) = source.address, case .v4(let to) = destination.address, payload.count <= 1472 else { return false }
        let length = 28 + payload.count
        packet[0] = 0x45; packet[1] = 0
        packet[2] = UInt8(length >> 8); packet[3] = UInt8(length & 0xFF)
        packet[4] = 0; packet[5] = 0; packet[6] = 0x40; packet[7] = 0  // id 0 (the kernel picks one), don't fragment
        packet[8] = 64; packet[9] = UInt8(IPPROTO_UDP); packet[10] = 0; packet[11] = 0
        for (index, byte) in from.bytes.enumerated() { packet[12 + index] = byte }
        for (index, byte) in to.bytes.enumerated() { packet[16 + index] = byte }
        packet[20] = UInt8(source.port >> 8); packet[21] = UInt8(source.port & 0xFF)
        packet[22] = UInt8(destination.port >> 8); packet[23] = UInt8(destination.port & 0xFF)
        let udpLength = 8 + payload.count
        packet[24] = UInt8(udpLength >> 8); packet[25] = UInt8(udpLength & 0xFF)
        packet[26] = 0; packet[27] = 0
        packet.replaceSubrange(28..<length, with: payload)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = to.value.bigEndian
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(descriptor, packet, length, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return sent == length
    }
}

/// Reads copies of the IPv4 packets crossing a lab namespace (an `AF_PACKET` socket, as tcpdump
/// does), keeping the UDP datagrams whose payload starts with a given prefix.
public final class PacketCapture {
    /// A captured UDP datagram.
    public struct Datagram: Sendable {
        public var source: Endpoint
        public var destination: Endpoint
        public var payload: [UInt8]
    }

    private let descriptor: Int32
    private let prefix: [UInt8]
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    public init(in namespace: Namespace, payloadPrefix: [UInt8]) throws {
        prefix = payloadPrefix
        descriptor = try namespace.inside {
            let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), Int32(UInt16(0x0800).bigEndian))
            guard fd >= 0 else { throw SystemError("socket", "AF_PACKET") }
            return fd
        }
    }

    deinit { close(descriptor) }

    /// The datagrams captured since the last call (each packet seen once per interface it crossed).
    public func take() -> [Datagram] {
        var found: [Datagram] = []
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { return found }
            guard count >= 28, buffer[0] >> 4 == 4, buffer[9] == UInt8(IPPROTO_UDP) else { continue }
            let headerLength = Int(buffer[0] & 0x0F) * 4
            guard count >= headerLength + 8 else { continue }
            let payload = Array(buffer[(headerLength + 8)..<count])
            guard payload.starts(with: prefix) else { continue }
            let source = IPv4Address(buffer[12], buffer[13], buffer[14], buffer[15])
            let destination = IPv4Address(buffer[16], buffer[17], buffer[18], buffer[19])
            let sourcePort = UInt16(buffer[headerLength]) << 8 | UInt16(buffer[headerLength + 1])
            let destinationPort = UInt16(buffer[headerLength + 2]) << 8 | UInt16(buffer[headerLength + 3])
            found.append(Datagram(source: Endpoint(.v4(source), sourcePort), destination: Endpoint(.v4(destination), destinationPort),
                                  payload: payload))
        }
    }
}
