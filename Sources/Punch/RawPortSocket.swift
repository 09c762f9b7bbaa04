import CLinux
import Net

/// LANrage's datagrams on a port that WireGuard owns, through raw sockets: IPv4, and IPv6 where
/// the host has it.
///
/// Sending: the raw socket carries a UDP header we build — source port = the WireGuard port —
/// and the kernel adds the IP header. The kernel does not compute the UDP checksum of raw IPv4
/// sends, so it is computed here over the pseudo-header, with the source address the kernel will
/// choose for the destination (asked of the routing table by connecting a probe UDP socket). On
/// IPv6, `IPV6_CHECKSUM` has the kernel compute it (and check it on what arrives).
///
/// Receiving: a raw socket gets a copy of every UDP datagram delivered to this host (WireGuard
/// still gets its own); a ``PortFilter`` in the kernel keeps only STUN and punch messages to the
/// port. ``descriptor`` is an epoll set of both raw sockets, readable when either is, so the event
/// loop watches one descriptor. Needs CAP_NET_RAW.
public final class RawPortSocket: PortSocket {
    public let port: UInt16
    public let descriptor: Int32
    private let v4: Int32
    /// The IPv6 raw socket, or -1 when the host has no IPv6.
    private let v6: Int32
    private let routeProbe: Int32
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    public init(port: UInt16) throws(SystemError) {
        var opened: [Int32] = []
        func fail(_ call: String) -> SystemError {
            let error = SystemError(call, "port \(port)")
            for fd in opened { close(fd) }
            return error
        }
        let flags = lanrage_sock_raw | lanrage_sock_nonblock | lanrage_sock_cloexec
        let v4 = socket(AF_INET, flags, Int32(IPPROTO_UDP))
        guard v4 >= 0 else { throw fail("socket(AF_INET, SOCK_RAW, IPPROTO_UDP)") }
        opened.append(v4)
        guard Self.attach(PortFilter(port: port), to: v4) else { throw fail("setsockopt(SO_ATTACH_FILTER)") }
        let v6 = socket(AF_INET6, flags, Int32(IPPROTO_UDP))
        if v6 >= 0 {
            opened.append(v6)
            var offset: Int32 = 6, one: Int32 = 1
            let size = socklen_t(MemoryLayout<Int32>.size)
            guard setsockopt(v6, Int32(IPPROTO_IPV6), lanrage_ipv6_checksum, &offset, size) == 0,
                  setsockopt(v6, Int32(IPPROTO_IPV6), lanrage_ipv6_recvpktinfo, &one, size) == 0,
                  Self.attach(PortFilter(port: port, ipv6: true), to: v6)
            else { throw fail("setsockopt (IPv6 raw socket)") }
        } else if lanrage_errno() != EAFNOSUPPORT {
            throw fail("socket(AF_INET6, SOCK_RAW, IPPROTO_UDP)")
        }
        let probe = socket(AF_INET, lanrage_sock_dgram | lanrage_sock_cloexec, 0)
        guard probe >= 0 else { throw fail("socket(AF_INET, SOCK_DGRAM) (route probe)") }
        opened.append(probe)
        let set = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard set >= 0 else { throw fail("epoll_create1") }
        for fd in [v4, v6] where fd >= 0 {
            var event = epoll_event()
            event.events = lanrage_epollin
            event.data.fd = fd
            guard epoll_ctl(set, EPOLL_CTL_ADD, fd, &event) == 0 else {
                opened.append(set)
                throw fail("epoll_ctl")
            }
            // Datagrams queued between socket() and the filter were not filtered: drop them.
            while recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) >= 0 {}
        }
        self.port = port
        self.v4 = v4
        self.v6 = v6
        routeProbe = probe
        descriptor = set
    }

    private static func attach(_ filter: PortFilter, to fd: Int32) -> Bool {
        var program = filter.instructions
        return program.withUnsafeMutableBufferPointer { instructions in
            var fprog = sock_fprog(len: UInt16(instructions.count), filter: instructions.baseAddress)
            return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, socklen_t(MemoryLayout<sock_fprog>.size))
        } == 0
    }

    deinit {
        for fd in [descriptor, v4, v6, routeProbe] where fd >= 0 { close(fd) }
    }

    @discardableResult
    public func send(_ payload: [UInt8], to destination: Endpoint) throws(SystemError) -> Bool {
        let length = 8 + payload.count
        guard length <= 65_507 else { throw SystemError("sendto", destination.description, errno: EMSGSIZE) }
        var datagram: [UInt8] = [
            UInt8(port >> 8), UInt8(port & 0xFF), UInt8(destination.port >> 8), UInt8(destination.port & 0xFF),
            UInt8(length >> 8), UInt8(length & 0xFF), 0, 0,
        ]
        datagram += payload
        let fd: Int32
        switch destination.address {
        case .v4(let address):
            let checksum = InternetChecksum.udp(source: try sourceAddress(toward: destination), destination: address, datagram: datagram)
            datagram[6] = UInt8(checksum >> 8)
            datagram[7] = UInt8(checksum & 0xFF)
            fd = v4
        case .v6:
            guard v6 >= 0 else { throw SystemError("sendto", "\(destination) (this host has no IPv6)", errno: EAFNOSUPPORT) }
            fd = v6
        }
        // The port of a raw socket's destination address must be 0: the UDP header carries it.
        let sent = datagram.withUnsafeBytes { bytes in
            Endpoint(destination.address, 0).withSockAddr { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, $1) }
        }
        if sent >= 0 { return true }
        if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return false }
        throw SystemError("sendto (raw, from port \(port))", destination.description)
    }

    /// The address the kernel uses as source toward `destination`.
    private func sourceAddress(toward destination: Endpoint) throws(SystemError) -> IPv4Address {
        guard case .v4(let address) = LocalAddresses.source(toward: destination, probe: routeProbe) else {
            throw SystemError("route lookup", destination.description)
        }
        return address
    }

    public func receive() throws(SystemError) -> PortDatagram? {
        var addresses = [UInt8](repeating: 0, count: 32)
        for fd in [v4, v6] where fd >= 0 {
            while true {
                let count = fd == v4 ? recv(fd, &buffer, buffer.count, 0) : lanrage_recv_from_to6(fd, &buffer, buffer.count, &addresses)
                if count < 0 {
                    let code = lanrage_errno()
                    if code == EINTR { continue }
                    if code == EAGAIN || code == EWOULDBLOCK { break }
                    throw SystemError("recv (raw)", "port \(port)")
                }
                // The filter already checked port and prefix; parse defensively all the same.
                let packet = buffer[..<count]
                if fd == v4, let datagram = Self.parse(packet) { return datagram }
                if fd == v6, let source = IPv6Address(bytes: Array(addresses[..<16])), let destination = IPv6Address(bytes: Array(addresses[16...])),
                   let datagram = Self.parseUDP(packet, from: .v6(source), to: .v6(destination)) {
                    return datagram
                }
            }
        }
        return nil
    }

    /// An IPv4 packet carrying UDP, as a datagram; `nil` for anything malformed or not UDP.
    static func parse(_ packet: ArraySlice<UInt8>) -> PortDatagram? {
        let packet = Array(packet)
        guard packet.count >= 20, packet[0] >> 4 == 4, packet[9] == 17 else { return nil }
        let headerLength = Int(packet[0] & 0x0F) * 4
        guard headerLength >= 20, packet.count >= headerLength + 8 else { return nil }
        func address(_ offset: Int) -> IPAddress {
            .v4(IPv4Address(packet[offset], packet[offset + 1], packet[offset + 2], packet[offset + 3]))
        }
        return parseUDP(packet[headerLength...], from: address(12), to: address(16))
    }

    /// A UDP header and what follows it, as a datagram from `source` to `destination`; `nil` when
    /// the header's length does not fit.
    static func parseUDP(_ udp: ArraySlice<UInt8>, from source: IPAddress, to destination: IPAddress) -> PortDatagram? {
        let start = udp.startIndex
        guard udp.count >= 8 else { return nil }
        func word(_ offset: Int) -> UInt16 { UInt16(udp[start + offset]) << 8 | UInt16(udp[start + offset + 1]) }
        let length = Int(word(4))
        guard length >= 8, length <= udp.count else { return nil }
        return PortDatagram(payload: Array(udp[(start + 8)..<(start + length)]),
                            source: Endpoint(source, word(0)), destination: Endpoint(destination, word(2)))
    }
}
