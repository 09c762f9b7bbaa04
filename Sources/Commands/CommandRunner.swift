#if canImport(Glibc)
import Glibc
#endif
import Output

extension Command {
    /// Parses the process's arguments, calls `prepare` (to set up logging from global options),
    /// runs the chosen command and returns its exit status. Usage errors and failures are printed
    /// to standard error as `lanrage: message`.
    public func main(
        _ arguments: [String] = Array(CommandLine.arguments.dropFirst()),
        prepare: (Invocation) throws -> Void = { _ in }
    ) -> Int32 {
        do {
            switch try parse(arguments) {
            case .help(let text):
                StandardStreams.out(text)
                return ExitCode.success.rawValue
            case .run(let command, let invocation):
                try prepare(invocation)
                return try command.run!(invocation).rawValue
            }
        } catch let error as UsageError {
            StandardStreams.error("\(error)\n")
            return error.exitCode.rawValue
        } catch {
            StandardStreams.error("\(name): \(error)\n")
            return ((error as? ExitCodeProviding)?.exitCode ?? .failure).rawValue
        }
    }
}
