import Commands
import Output

/// Options every subcommand accepts: how and how much to log.
enum GlobalOptions {
    static let options: [Option] = [
        .value("log-level", "LEVEL", help: "Least severe log level shown: trace, debug, info, notice, warning, error or critical.", default: "info"),
        .value("log-format", "FORMAT", help: "Log line format: logfmt or json.", default: "logfmt"),
    ]

    /// Sets the process's log output from `--log-level` and `--log-format`; call once, before logging.
    static func bootstrapLogging(_ invocation: Invocation) throws(CommandError) {
        LogOutput.standard.level = try invocation.value("log-level", as: Logger.Level.self) ?? .info
        LogOutput.standard.format = try invocation.value("log-format", as: LogFormat.self) ?? .logfmt
    }
}

extension Logger.Level: ArgumentValue {}
extension LogFormat: ArgumentValue {}
