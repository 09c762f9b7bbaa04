import CLinux
import Net
import Punch
import Time

/// ICMP echo over the overlay (IPv4), for `lanrage ping`: a raw ICMP socket (root or CAP_NET_RAW),
/// one request at a time, the answer matched by identifier and sequence number.
public final class Pinger {
    private let descriptor: Int32
    private let identifier = UInt16.random(in: 1...UInt16.max)
    public let destination: IPv4Address

    public init(_ destination: IPv4Address) throws(SystemError) {
        let fd = socket(AF_INET, lanrage_sock_raw | lanrage_sock_cloexec, Int32(IPPROTO_ICMP))
        guard fd >= 0 else { throw SystemError("socket", "ICMP") }
        descriptor = fd
        self.destination = destination
    }

    deinit { close(descriptor) }

    /// Sends echo request `sequence` and waits up to `timeout` for its reply: the round trip, or `nil`.
    public func ping(sequence: UInt16, timeout: Duration) throws(SystemError) -> Duration? {
        var packet: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xFF), UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        packet += Array("lanrage ping".utf8)
        let checksum = InternetChecksum.checksum(packet)
        packet[2] = UInt8(checksum >> 8)
        packet[3] = UInt8(checksum & 0xFF)
        let sent = MonotonicTime.now()
        let target = Endpoint(.v4(destination), 0)
        let result = target.withSockAddr { address, length in
            packet.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, 0, address, length) }
        }
        guard result >= 0 else { throw SystemError("sendto", "\(destination)") }
        let deadline = sent + timeout
        var buffer = [UInt8](repeating: 0, count: 1500)
        while MonotonicTime.now() < deadline {
            guard try !Readiness.readable([descriptor], timeout: deadline - MonotonicTime.now()).isEmpty else { break }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count >= 20 else { continue }
            let headerLength = Int(buffer[0] & 0x0F) * 4
            guard count >= headerLength + 8, buffer[headerLength] == 0,
                  buffer[12..<16].elementsEqual(destination.bytes),
                  UInt16(buffer[headerLength + 4]) << 8 | UInt16(buffer[headerLength + 5]) == identifier,
                  UInt16(buffer[headerLength + 6]) << 8 | UInt16(buffer[headerLength + 7]) == sequence else { continue }
            return MonotonicTime.now() - sent
        }
        return nil
    }
}
