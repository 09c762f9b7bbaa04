import CLinux

/// Groups of `/etc/group`, read directly: the static binary has no NSS, and on routers the file
/// is all there is.
enum SystemGroup {
    /// The group that may use the agent's status socket (`lanrage status`, `lanrage ping`).
    static let statusGroup = "lanrage"

    /// The id of group `name` in `file`, or nil when the file has no such group (or cannot be read).
    static func id(named name: String, in file: String = "/etc/group") -> gid_t? {
        let fd = lanrage_open(file, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1 << 16)
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { CLinux.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            guard count > 0 else { break }
            filled += count
        }
        return id(named: name, inText: bytes[..<filled])
    }

    /// The id of group `name` in the text of a group file: `name:password:GID:members` lines.
    static func id(named name: String, inText text: ArraySlice<UInt8>) -> gid_t? {
        for line in text.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard fields.count >= 3, fields[0].elementsEqual(name.utf8),
                  let gid = UInt32(String(decoding: fields[2], as: UTF8.self)), gid != UInt32.max else { continue }
            return gid_t(gid)
        }
        return nil
    }
}
