import CLinux

/// A non-blocking UDP socket bound to one local endpoint. Closed when released.
/// As a ``PortSocket`` it serves LANrage's datagrams on a port nothing else listens on.
public final class UDPSocket: PortSocket {
    /// The file descriptor, for registration with an event loop.
    public let descriptor: Int32
    /// The bound local endpoint (with the port the kernel chose when 0 was asked for).
    public private(set) var local: Endpoint

    /// Opens a socket bound to `local`; port 0 lets the kernel choose.
    public init(binding local: Endpoint, reuseAddress: Bool = false) throws(SystemError) {
        let fd = socket(local.address.family, lanrage_sock_dgram | lanrage_sock_nonblock | lanrage_sock_cloexec, 0)
        guard fd >= 0 else { throw SystemError("socket", local.description) }
        var one: Int32 = 1
        if reuseAddress { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        // IPv6 only: IPv4 has sockets of its own, and an IPv4 peer seen as ::ffff:a.b.c.d would
        // count as IPv6 everywhere (rate limits by /64, relay families, observed addresses).
        if local.address.family == AF_INET6 { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let bound = local.withSockAddr { bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = SystemError("bind", local.description)
            close(fd)
            throw error
        }
        descriptor = fd
        self.local = local
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        if named == 0, let actual = Endpoint(storage) { self.local = actual }
    }

    deinit { close(descriptor) }

    /// Raises the socket's receive and send buffers to `bytes` each, so that a burst waits in the
    /// kernel instead of being dropped while the (single-threaded) process is busy. With
    /// CAP_NET_ADMIN the size is forced past `net.core.rmem_max`/`wmem_max`; without it the kernel
    /// caps it there.
    public func enlargeBuffers(to bytes: Int32) {
        var size = bytes
        let length = socklen_t(MemoryLayout<Int32>.size)
        for (forced, plain) in [(SO_RCVBUFFORCE, SO_RCVBUF), (SO_SNDBUFFORCE, SO_SNDBUF)] {
            if setsockopt(descriptor, SOL_SOCKET, forced, &size, length) != 0 {
                setsockopt(descriptor, SOL_SOCKET, plain, &size, length)
            }
        }
    }

    /// The bound port.
    public var port: UInt16 { local.port }

    /// Sends one datagram; returns `false` when the send would block (the datagram is dropped, as UDP allows).
    @discardableResult
    public func send(_ bytes: [UInt8], to destination: Endpoint) throws(SystemError) -> Bool {
        try outcome(bytes.withUnsafeBytes { transmit($0, to: destination) }, destination)
    }

    /// Sends one datagram straight from `datagram` (no copy: for forwarding paths).
    @discardableResult
    public func send(_ datagram: UnsafeRawBufferPointer, to destination: Endpoint) throws(SystemError) -> Bool {
        try outcome(transmit(datagram, to: destination), destination)
    }

    private func transmit(_ datagram: UnsafeRawBufferPointer, to destination: Endpoint) -> Int {
        destination.withSockAddr { sendto(descriptor, datagram.baseAddress, datagram.count, 0, $0, $1) }
    }

    /// `sendto`'s result (read right after it, while `errno` is its own).
    private func outcome(_ sent: Int, _ destination: Endpoint) throws(SystemError) -> Bool {
        if sent >= 0 { return true }
        if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return false }
        throw SystemError("sendto", destination.description)
    }

    /// Receives one datagram into `buffer`, or `nil` when none is queued.
    public func receive(into buffer: inout [UInt8]) throws(SystemError) -> (count: Int, from: Endpoint)? {
        var storage = sockaddr_storage()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(descriptor, raw.baseAddress, raw.count, 0, $0, &length)
                    }
                }
            }
            if count < 0 {
                if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return nil }
                // An ICMP port unreachable for an earlier send surfaces here as ECONNREFUSED: it is
                // not a datagram, and neither is an interrupted call.
                if lanrage_errno() == ECONNREFUSED || lanrage_errno() == EINTR { continue }
                throw SystemError("recvfrom", local.description)
            }
            guard let from = Endpoint(storage) else { return nil }
            return (count, from)
        }
    }

    /// The pending error of socket `descriptor`, cleared by reading it: on a connected UDP socket,
    /// ECONNREFUSED when an ICMP port unreachable answered an earlier send; 0 when none.
    public static func takePendingError(_ descriptor: Int32) -> Int32 {
        var pending: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &pending, &size) == 0 ? pending : lanrage_errno()
    }

    /// Has the kernel report ICMP errors on this socket even unconnected (`IP_RECVERR`): they set
    /// its pending error (``takePendingError(_:)``) and queue on its error queue, which
    /// ``drainErrorQueue()`` must empty (the socket polls as failed while it holds any).
    public func reportErrorsUnconnected() {
        var one: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_IP), IP_RECVERR, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Empties the error queue filled by ``reportErrorsUnconnected()`` (at most 64 entries a call).
    /// It resets the pending error: take that first.
    public func drainErrorQueue() {
        var buffer = [UInt8](repeating: 0, count: 64)
        for _ in 0..<64 {
            guard buffer.withUnsafeMutableBytes({ recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_ERRQUEUE)) }) >= 0 else { return }
        }
    }

    /// Receives one datagram, or `nil` when none is queued.
    public func receive() throws(SystemError) -> PortDatagram? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        guard let (count, source) = try receive(into: &buffer) else { return nil }
        return PortDatagram(payload: Array(buffer[..<count]), source: source, destination: local)
    }
}
