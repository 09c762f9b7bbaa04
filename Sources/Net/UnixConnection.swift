import CLinux

/// An accepted unix stream connection, non-blocking: for a server on an event loop, which reads
/// what has arrived and writes what the socket takes, and never waits. Closed when released.
public final class UnixConnection {
    public let descriptor: Int32

    init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { close(descriptor) }

    /// Reads what has arrived into `buffer`, at most `limit` bytes: the count read, 0 when the
    /// other side has closed its end, `nil` when nothing is queued.
    public func receive(into buffer: inout [UInt8], limit: Int) throws(SystemError) -> Int? {
        let wanted = min(limit, buffer.count)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress!, wanted, 0) }
            if count >= 0 { return count }
            if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return nil }
            if lanrage_errno() == EINTR { continue }
            throw SystemError("recv", "unix socket")
        }
    }

    /// Sends as much of `bytes` as the socket takes now: the count sent (0 when it is full).
    public func send(_ bytes: ArraySlice<UInt8>) throws(SystemError) -> Int {
        while true {
            let sent = bytes.withUnsafeBytes { CLinux.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent >= 0 { return sent }
            if lanrage_errno() == EAGAIN || lanrage_errno() == EWOULDBLOCK { return 0 }
            if lanrage_errno() == EINTR { continue }
            throw SystemError("send", "unix socket")
        }
    }
}
