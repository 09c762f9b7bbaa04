import CLinux
import Output

extension Command {
    /// Parses the process's arguments, calls `prepare` (to set up logging from global options),
    /// runs the chosen command and returns its exit status. Usage errors and failures are printed
    /// to standard error as `lanrage: message`.
    public func main(
        _ arguments: [String] = ProcessArguments.current() ?? [],
        prepare: (Invocation) throws(CommandError) -> Void = { _ in }
    ) -> Int32 {
        do throws(CommandError) {
            let parsed: ParsedCommandLine
            do { parsed = try parse(arguments) } catch { throw CommandError(error) }
            switch parsed {
            case .help(let text):
                StandardStreams.out(text)
                return ExitCode.success.rawValue
            case .run(let command, let invocation):
                try prepare(invocation)
                return try command.run!(invocation).rawValue
            }
        } catch {
            StandardStreams.error(error.isUsage ? "\(error)\n" : "\(name): \(error)\n")
            return error.exitCode.rawValue
        }
    }
}
