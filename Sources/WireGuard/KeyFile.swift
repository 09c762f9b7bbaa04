import CLinux
import Net

/// Writing key files: atomically (a temporary file in the same folder, fsync, rename) with mode 0600,
/// so a reader never sees a half-written key and no other user can read it.
public enum KeyFile {
    /// Writes `text` to `path` atomically with mode 0600.
    public static func write(_ text: String, to path: String) throws(SystemError) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        var template = Array((path + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SystemError("create a temporary file in", directory) }
        let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var failure: SystemError?
        if fchmod(fd, 0o600) != 0 { failure = SystemError("fchmod", temporary) }
        if failure == nil {
            var bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { CLinux.write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0 {
                    if lanrage_errno() == EINTR { continue }
                    failure = SystemError("write", temporary)
                    break
                }
                offset += written
            }
            LibSodium.wipe(&bytes)
        }
        if failure == nil, fsync(fd) != 0 { failure = SystemError("fsync", temporary) }
        if close(fd) != 0, failure == nil { failure = SystemError("close", temporary) }
        if failure == nil, rename(temporary, path) != 0 { failure = SystemError("rename to", path) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        // Make the rename durable too.
        let directoryFD = lanrage_open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
