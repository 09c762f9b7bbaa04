import CLinux

/// A failed system call, with what was being done and on what, for a message a person can act on.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed ("bind", "sendto", …).
    public var operation: String
    /// What it was applied to ("192.0.2.1:3478", "/var/run/wireguard/wg0.sock", …).
    public var subject: String
    public var errno: Int32

    public init(_ operation: String, _ subject: String, errno: Int32 = lanrage_errno()) {
        self.operation = operation
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        var text = "\(operation) \(subject): \(reason)"
        switch errno {
        case EADDRINUSE: text += " (another process holds this port)"
        case EACCES, EPERM: text += " (run as root or grant CAP_NET_ADMIN/CAP_NET_RAW)"
        default: break
        }
        return text
    }
}
