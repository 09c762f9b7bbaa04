import CLinux

/// Writing whole strings to standard output and standard error without Foundation.
public enum StandardStreams {
    /// Writes `text` to standard output.
    public static func out(_ text: String) { write(text, to: STDOUT_FILENO) }

    /// Writes `text` to standard error.
    public static func error(_ text: String) { write(text, to: STDERR_FILENO) }

    /// Writes all of `text` to `descriptor`, retrying short writes and interrupted calls.
    public static func write(_ text: String, to descriptor: Int32) {
        var text = text
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = CLinux.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if lanrage_errno() == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
