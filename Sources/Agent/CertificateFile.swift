import CLinux
import Output
import Rendezvous

/// A member certificate in a file: its bytes in base64 on one line, as `lanrage ca sign` writes
/// it. Public (it proves nothing without the member's private key), so any file mode will do.
public enum CertificateFile {
    public struct Problem: Error, ExitCodeProviding, CustomStringConvertible {
        public let description: String
        public var exitCode: ExitCode { .dataError }
        init(_ description: String) { self.description = description }
    }

    /// The certificate's bytes (its form is not checked here).
    public static func read(_ path: String) throws(Problem) -> [UInt8] {
        let fd = lanrage_open(path, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw Problem("cannot read certificate \(path): \(String(cString: strerror(lanrage_errno())))") }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 4096)
        var filled = 0
        while filled < text.count {
            let count = text.withUnsafeMutableBytes { CLinux.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0, lanrage_errno() == EINTR { continue }
            guard count > 0 else { break }
            filled += count
        }
        guard filled < text.count else { throw Problem("certificate \(path) is larger than 4 KiB") }
        guard let bytes = Crypto.bytes(base64: String(decoding: text[..<filled], as: UTF8.self)) else {
            throw Problem("\(path) does not hold a certificate (base64, as 'lanrage ca sign' writes it)")
        }
        return bytes
    }
}
