import CLinux

/// A connected unix stream socket with bounded blocking reads and writes: one request, one
/// answer, as the agent's status socket speaks (the client's side).
public final class UnixStream {
    public let descriptor: Int32

    init(descriptor: Int32, timeout: Duration) {
        self.descriptor = descriptor
        _ = lanrage_set_socket_timeouts(descriptor, timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    }

    deinit { close(descriptor) }

    /// Connects to the socket at `path`.
    public static func connect(_ path: String, timeout: Duration = .seconds(5)) throws(SystemError) -> UnixStream {
        let fd = socket(AF_UNIX, lanrage_sock_stream | lanrage_sock_cloexec, 0)
        guard fd >= 0 else { throw SystemError("socket", path) }
        let stream = UnixStream(descriptor: fd, timeout: timeout)
        var address = try UnixStream.address(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { CLinux.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw SystemError("connect", path) }
        return stream
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if lanrage_errno() == EINTR { continue }
                throw SystemError("send", "unix socket")
            }
            offset += sent
        }
    }

    /// Reads until the other side shuts down its end, or `delimiter` arrives, at most `limit` bytes.
    public func read(upTo delimiter: UInt8? = nil, limit: Int = 1 << 20) throws(SystemError) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress!, $0.count, 0) }
            if count < 0 {
                if lanrage_errno() == EINTR { continue }
                throw SystemError("recv", "unix socket")
            }
            if count == 0 { break }
            bytes += buffer[..<count]
            if let delimiter, buffer[..<count].contains(delimiter) { break }
        }
        return bytes
    }

    static func address(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw SystemError("bind", path, errno: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return address
    }
}

/// A listening unix stream socket at a path, created with `mode`; a stale socket file left by a
/// dead process is replaced, a live one is refused ("another agent is running").
public final class UnixListener {
    public let descriptor: Int32
    public let path: String

    public init(path: String, mode: mode_t = 0o600) throws(SystemError) {
        if let existing = try? UnixStream.connect(path, timeout: .milliseconds(200)) {
            _ = existing
            throw SystemError("bind", path, errno: EADDRINUSE)
        }
        unlink(path)
        let fd = socket(AF_UNIX, lanrage_sock_stream | lanrage_sock_cloexec | lanrage_sock_nonblock, 0)
        guard fd >= 0 else { throw SystemError("socket", path) }
        var address = try UnixStream.address(path)
        let previous = umask(0o777 & ~mode)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(previous)
        guard bound == 0, listen(fd, 16) == 0 else {
            let error = SystemError(bound == 0 ? "listen" : "bind", path)
            CLinux.close(fd)
            throw error
        }
        descriptor = fd
        self.path = path
    }

    /// The next waiting connection, if any, non-blocking like the listener.
    public func accept() -> UnixConnection? {
        let fd = CLinux.accept(descriptor, nil, nil)
        guard fd >= 0 else { return nil }
        _ = lanrage_fcntl(fd, F_SETFD, FD_CLOEXEC)
        // Linux does not pass O_NONBLOCK on to the accepted socket.
        _ = lanrage_fcntl(fd, F_SETFL, lanrage_fcntl(fd, F_GETFL, 0) | O_NONBLOCK)
        return UnixConnection(descriptor: fd)
    }

    /// Closes the socket and removes its file.
    public func close() {
        CLinux.close(descriptor)
        unlink(path)
    }
}
