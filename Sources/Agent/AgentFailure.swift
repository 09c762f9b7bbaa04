import CLinux
import Output
import Net
import WireGuard

/// Why the agent cannot start or run, beyond its configuration: the message, and the exit status
/// of what failed (69 when a service it needs is missing, 77 without the privileges it needs).
public struct AgentFailure: Error, ExitCodeProviding, CustomStringConvertible {
    public let description: String
    public let exitCode: ExitCode

    init(_ description: String, exitCode: ExitCode = .unavailable) {
        self.description = description
        self.exitCode = exitCode
    }

    /// `error`, with its own message and exit status.
    init<E: ExitCodeProviding & CustomStringConvertible>(_ error: E) {
        self.init(error.description, exitCode: error.exitCode)
    }
}

/// Runs `body`, turning what it throws into an ``AgentFailure`` with the error's own message and exit status.
func starting<T, E: ExitCodeProviding & CustomStringConvertible>(_ body: () throws(E) -> T) throws(AgentFailure) -> T {
    do { return try body() } catch { throw AgentFailure(error) }
}

extension SystemError: ExitCodeProviding {
    /// 77 for a missing privilege, 69 otherwise (a socket, a port, the event loop: a service the
    /// command needs is not there).
    public var exitCode: ExitCode { errno == EACCES || errno == EPERM ? .noPermission : .unavailable }
}

extension WireGuardError: ExitCodeProviding {
    public var exitCode: ExitCode {
        switch kind {
        case .unavailable: .unavailable
        case .permission: .noPermission
        case .exists: .failure
        case .notFound: .failure
        case .invalidInput: .dataError
        case .invalidConfig: .config
        case .failed, .interrupted: .failure
        }
    }
}
