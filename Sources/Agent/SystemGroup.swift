import CLinux
import Net

/// Groups of `/etc/group`, read directly: the static binary has no NSS, and on routers the file
/// is all there is.
enum SystemGroup {
    /// The group that may use the agent's status socket (`lanrage status`, `lanrage ping`).
    static let statusGroup = "lanrage"

    /// The id of group `name` in `file`, or nil when the file has no such group (or cannot be read).
    static func id(named name: String, in file: String = "/etc/group") -> gid_t? {
        guard let bytes = SmallFile.read(file) else { return nil }
        return id(named: name, inText: bytes[...])
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
