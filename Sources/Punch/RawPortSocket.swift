import CLinux
import Net

/// LANrage's datagrams on a port that WireGuard owns, through an IPv4 raw socket.
///
/// Sending: the raw socket carries a UDP header we build — source port = the WireGuard port —
/// and the kernel adds the IP header. The kernel does not compute the UDP checksum of raw IPv4
/// sends, so it is computed here over the pseudo-header, with the source address the kernel will
/// choose for the destination (asked of the routing table by connecting a probe UDP socket).
///
/// Receiving: the raw socket gets a copy of every UDP datagram delivered to this host (WireGuard
/// still gets its own); a ``PortFilter`` in the kernel keeps only STUN and punch messages to the
/// port. Needs CAP_NET_RAW.
public final class RawPortSocket: PortSocket {
    public let port: UInt16
    public let descriptor: Int32
    private let routeProbe: Int32
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    public init(port: UInt16) throws(SystemError) {
        let flags = lanrage_sock_raw | lanrage_sock_nonblock | lanrage_sock_cloexec
        let fd = socket(AF_INET, flags, Int32(IPPROTO_UDP))
        guard fd >= 0 else { throw SystemError("socket(AF_INET, SOCK_RAW, IPPROTO_UDP)", "port \(port)") }
        var program = PortFilter(port: port).instructions
        let attached = program.withUnsafeMutableBufferPointer { instructions in
            var fprog = sock_fprog(len: UInt16(instructions.count), filter: instructions.baseAddress)
            return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, socklen_t(MemoryLayout<sock_fprog>.size))
        }
        guard attached == 0 else {
            let error = SystemError("setsockopt(SO_ATTACH_FILTER)", "port \(port)")
            close(fd)
            throw error
        }
        let probe = socket(AF_INET, lanrage_sock_dgram | lanrage_sock_cloexec, 0)
        guard probe >= 0 else {
            let error = SystemError("socket(AF_INET, SOCK_DGRAM)", "route probe")
            close(fd)
            throw error
        }
        self.port = port
        descriptor = fd
        routeProbe = probe
        // Datagrams queued between socket() and the filter were not filtered: drop them.
        while recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) >= 0 {}
    }

    deinit {
        close(descriptor)
        close(routeProbe)
    }

    @discardableResult
    public func send(_ payload: [UInt8], to destination: Endpoint) throws(SystemError) -> Bool {
        guard case .v4(let destinationAddress) = destination.address else {
            throw SystemError("sendto", "\(destination) (the raw path is IPv4 only)", errno: EAFNOSUPPORT)
        }
        let source = try sourceAddress(toward: destination)
        let length = 8 + payload.count
        guard length <= 65_507 else { throw SystemError("sendto", destination.description, errno: EMSGSIZE) }
        var datagram: [UInt8] = [
            UInt8(port >> 8), UInt8(port & 0xFF), UInt8(destination.port >> 8), UInt8(destination.port & 0xFF),
            UInt8(length >> 8), UInt8(length & 0xFF), 0, 0,
        ]
        datagram += payload
        let checksum = InternetChecksum.udp(source: source, destination: destinationAddress, datagram: datagram)
        datagram[6] = UInt8(checksum >> 8)
        datagram[7] = UInt8(checksum & 0xFF)
        // The port of a raw socket's destination address must be 0: the UDP header carries it.
        let sent = datagram.withUnsafeBytes { bytes in
            Endpoint(destination.address, 0).withSockAddr { sendto(descriptor, bytes.baseAddress, bytes.count, 0, $0, $1) }
        }
        if sent >= 0 { return true }
        if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return false }
        throw SystemError("sendto (raw, from port \(port))", destination.description)
    }

    /// The address the kernel uses as source toward `destination`.
    private func sourceAddress(toward destination: Endpoint) throws(SystemError) -> IPv4Address {
        let connected = Endpoint(destination.address, destination.port == 0 ? 9 : destination.port).withSockAddr {
            connect(routeProbe, $0, $1)
        }
        guard connected == 0 else { throw SystemError("route lookup (connect)", destination.description) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(routeProbe, $0, &length) }
        }
        guard named == 0, let local = Endpoint(storage), case .v4(let address) = local.address else {
            throw SystemError("route lookup (getsockname)", destination.description)
        }
        return address
    }

    public func receive() throws(SystemError) -> PortDatagram? {
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count < 0 {
                if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return nil }
                if lanrage_errno() == EINTR { continue }
                throw SystemError("recv (raw, port \(port))", "")
            }
            // The filter already checked port and prefix; parse defensively all the same.
            if let datagram = RawPortSocket.parse(buffer[..<count]) { return datagram }
        }
    }

    /// An IPv4 packet carrying UDP, as a datagram; `nil` for anything malformed or not UDP.
    static func parse(_ packet: ArraySlice<UInt8>) -> PortDatagram? {
        let packet = Array(packet)
        guard packet.count >= 20, packet[0] >> 4 == 4, packet[9] == 17 else { return nil }
        let headerLength = Int(packet[0] & 0x0F) * 4
        guard headerLength >= 20, packet.count >= headerLength + 8 else { return nil }
        func word(_ offset: Int) -> UInt16 { UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1]) }
        func address(_ offset: Int) -> IPv4Address {
            IPv4Address(packet[offset], packet[offset + 1], packet[offset + 2], packet[offset + 3])
        }
        let udpLength = Int(word(headerLength + 4))
        guard udpLength >= 8, headerLength + udpLength <= packet.count else { return nil }
        return PortDatagram(
            payload: Array(packet[(headerLength + 8)..<(headerLength + udpLength)]),
            source: Endpoint(.v4(address(12)), word(headerLength)),
            destination: Endpoint(.v4(address(16)), word(headerLength + 2)))
    }
}
