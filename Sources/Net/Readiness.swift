import CLinux

/// Waiting for sockets without an event loop: `poll(2)` over a few descriptors with a deadline.
/// For commands and tests that run one job; the agent uses the event loop instead.
public enum Readiness {
    /// Waits until one of `descriptors` is readable or `timeout` passes (negative: wait forever);
    /// returns the readable ones (empty on timeout). Retries when interrupted by a signal.
    public static func readable(_ descriptors: [Int32], timeout: Duration) throws(SystemError) -> [Int32] {
        try ready(descriptors, for: Int16(POLLIN), timeout: timeout)
    }

    /// Waits until `descriptor` is writable (or has failed) or `timeout` passes; false on timeout.
    public static func writable(_ descriptor: Int32, timeout: Duration) throws(SystemError) -> Bool {
        try !ready([descriptor], for: Int16(POLLOUT), timeout: timeout).isEmpty
    }

    private static func ready(_ descriptors: [Int32], for events: Int16, timeout: Duration) throws(SystemError) -> [Int32] {
        var fds = descriptors.map { pollfd(fd: $0, events: events, revents: 0) }
        let milliseconds: Int32
        if timeout < .zero {
            milliseconds = -1
        } else {
            let (seconds, attoseconds) = timeout.components
            let total = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
            milliseconds = Int32(clamping: total)
        }
        while true {
            let count = poll(&fds, nfds_t(fds.count), milliseconds)
            if count >= 0 { break }
            if lanrage_errno() == EINTR { continue }
            throw SystemError("poll", descriptors.map(String.init).joined(separator: ","))
        }
        return fds.filter { $0.revents & (events | Int16(POLLERR | POLLHUP)) != 0 }.map { $0.fd }
    }
}
