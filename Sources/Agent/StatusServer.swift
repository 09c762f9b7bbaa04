#if canImport(Glibc)
import Glibc
#endif
import Commands
import EventLoop
import Net

/// The agent's local status socket: a unix stream socket (0660) where each connection sends one
/// request line and reads one answer. Requests: `status`, `status json`, `peer QUERY`.
final class StatusServer {
    private let listener: UnixListener
    private let answer: (String) -> String

    init(path: String, loop: EventLoop, answer: @escaping (String) -> String) throws {
        // The socket's directory and its parents (/run/lanrage, /var/run/lanrage on OpenWrt), 0755.
        var directory = ""
        for component in path.split(separator: "/").dropLast() {
            directory += "/" + component
            if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw SystemError("mkdir", directory) }
        }
        let opened = Result { () throws(SystemError) -> UnixListener in try UnixListener(path: path, mode: 0o660) }
        switch opened {
        case .success(let listener): self.listener = listener
        case .failure(let error) where error.errno == EADDRINUSE:
            throw AgentFailure("another agent is running: its status socket \(path) answers (stop it, or set another StatusSocket)")
        case .failure(let error): throw error
        }
        self.answer = answer
        try loop.register(listener.descriptor) { [unowned self] in self.acceptAll() }
    }

    private func acceptAll() {
        // Bounded: a client gets 500 ms to send its line and take the answer.
        for _ in 0..<16 {
            guard let stream = listener.accept() else { return }
            guard let request = try? stream.read(upTo: 10, limit: 8192) else { continue }
            let line = String(decoding: request.prefix { $0 != 10 && $0 != 13 }, as: UTF8.self)
            try? stream.write(Array(answer(line).utf8))
        }
    }

    func close() { listener.close() }
}

/// Why the agent cannot start, beyond its configuration (exit 69).
public struct AgentFailure: Error, ExitCodeProviding, CustomStringConvertible {
    public let description: String
    public var exitCode: ExitCode { .unavailable }
    init(_ description: String) { self.description = description }
}
