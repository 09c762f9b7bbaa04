import CLinux

/// Reading a small system file (`/etc/group`, `/etc/resolv.conf`, `/etc/hosts`) whole, in one go
/// and bounded: the static binary has no NSS to ask, and on routers these files are all there is.
public enum SmallFile {
    /// The first `limit` bytes of the file at `path`, or nil when it cannot be opened.
    public static func read(_ path: String, limit: Int = 1 << 16) -> [UInt8]? {
        let fd = lanrage_open(path, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { CLinux.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            guard count > 0 else { break }
            filled += count
        }
        bytes.removeLast(bytes.count - filled)
        return bytes
    }
}
