import Output

/// A command line that cannot be run as given. The message names the bad argument.
public struct UsageError: Error, ExitCodeProviding, Equatable, CustomStringConvertible {
    /// The command path, e.g. `lanrage chart`.
    public var command: String
    public var message: String

    public init(command: String, message: String) {
        self.command = command
        self.message = message
    }

    public var exitCode: ExitCode { .usage }
    public var description: String { "\(command): \(message)\nTry '\(command) --help'." }
}
