import CLinux

/// The process's command line, read from `/proc/self/cmdline` (NUL-separated): the same on every
/// build, including Embedded Swift, which has no `CommandLine`.
public enum ProcessArguments {
    /// The arguments after the program name; nil when they cannot be read (no /proc).
    public static func current() -> [String]? {
        let fd = lanrage_open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = read(fd, &chunk, chunk.count)
            if count < 0, lanrage_errno() == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        if bytes.last == 0 { bytes.removeLast() }
        return bytes.split(separator: 0, omittingEmptySubsequences: false).dropFirst().map { String(decoding: $0, as: UTF8.self) }
    }
}
