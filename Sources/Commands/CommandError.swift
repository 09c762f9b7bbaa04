import Output

/// Why a command failed: the message printed after `lanrage:` (a usage error prints itself, with
/// its hint), and the exit status. Every error a command meets ends up as one of these, with the
/// message and status of the error it comes from.
public struct CommandError: Error, ExitCodeProviding, CustomStringConvertible, Equatable {
    public let description: String
    public let exitCode: ExitCode
    /// A usage error (printed as it is, not after the program's name).
    let isUsage: Bool

    public init(_ description: String, exitCode: ExitCode = .failure) {
        self.description = description
        self.exitCode = exitCode
        isUsage = false
    }

    public init(_ usage: UsageError) {
        description = usage.description
        exitCode = usage.exitCode
        isUsage = true
    }

    /// The error `error`, with its own message and exit status.
    public init<E: ExitCodeProviding & CustomStringConvertible>(_ error: E) {
        self.init(error.description, exitCode: error.exitCode)
    }
}

/// Runs `body`, turning what it throws into a ``CommandError`` with the error's own exit status.
public func failing<T, E: ExitCodeProviding & CustomStringConvertible>(_ body: () throws(E) -> T) throws(CommandError) -> T {
    do { return try body() } catch { throw CommandError(error) }
}

/// Runs `body`, turning what it throws into a ``CommandError`` with `exitCode` (for errors of
/// modules below the command line, which do not know exit statuses).
public func failing<T, E: Error & CustomStringConvertible>(_ exitCode: ExitCode, _ body: () throws(E) -> T) throws(CommandError) -> T {
    do { return try body() } catch { throw CommandError(error.description, exitCode: exitCode) }
}
