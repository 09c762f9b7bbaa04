import CLinux
import Output

/// Reads a secret from a file (trailing newline removed). Refuses files readable by group or others.
public enum SecretFile {
    public struct Problem: Error, ExitCodeProviding, CustomStringConvertible {
        public let description: String
        public var exitCode: ExitCode { .noInput }
        public init(description: String) { self.description = description }
    }

    public static func read(_ path: String) throws(Problem) -> [UInt8] {
        let fd = lanrage_open(path, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw Problem(description: "cannot read secret file \(path): \(String(cString: strerror(lanrage_errno())))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Problem(description: "cannot stat secret file \(path)") }
        guard info.st_mode & 0o077 == 0 else {
            throw Problem(description: "secret file \(path) is readable by others: chmod 600 \(path)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = CLinux.read(fd, &chunk, chunk.count)
            if count <= 0 { break }
            bytes += chunk[..<count]
            if bytes.count > 65_536 { throw Problem(description: "secret file \(path) is larger than 64 KiB") }
        }
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        guard !bytes.isEmpty else { throw Problem(description: "secret file \(path) is empty") }
        return bytes
    }
}
