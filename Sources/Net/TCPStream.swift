import CLinux

/// A non-blocking TCP connection, for short request–answer exchanges on the event loop (a
/// gateway's HTTP). Connecting returns at once; the socket turns writable when the connection is
/// made or has failed (``pendingError`` tells which). Closed when released.
public final class TCPStream {
    public let descriptor: Int32

    /// Starts connecting to `remote`.
    public init(connectingTo remote: Endpoint) throws(SystemError) {
        let fd = socket(remote.address.family, lanrage_sock_stream | lanrage_sock_nonblock | lanrage_sock_cloexec, 0)
        guard fd >= 0 else { throw SystemError("socket", remote.description) }
        guard remote.withSockAddr({ connect(fd, $0, $1) }) == 0 || lanrage_errno() == EINPROGRESS else {
            let error = SystemError("connect", remote.description)
            close(fd)
            throw error
        }
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// The socket's pending error, cleared by reading it: 0 once connected, else why it failed.
    public var pendingError: Int32 { UDPSocket.takePendingError(descriptor) }

    /// Sends from `bytes`: how many went (0 when the socket's buffer is full), or nil on error.
    public func send(_ bytes: ArraySlice<UInt8>) -> Int? {
        let sent = bytes.withUnsafeBytes { CLinux.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent >= 0 { return sent }
        return lanrage_errno() == EAGAIN || lanrage_errno() == EINTR ? 0 : nil
    }

    /// Appends what has arrived to `bytes`, up to `limit` bytes in all: true while the connection
    /// stays open and `bytes` holds less than `limit`, false otherwise (closed by the other side,
    /// failed, or full).
    public func receive(appendingTo bytes: inout [UInt8], limit: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while bytes.count < limit {
            let room = min(buffer.count, limit - bytes.count)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, room, 0) }
            if count > 0 {
                bytes += buffer[..<count]
                continue
            }
            return count < 0 && (lanrage_errno() == EAGAIN || lanrage_errno() == EINTR)
        }
        return false
    }
}
