import Commands
import Logging
import Output

/// Options every subcommand accepts: how and how much to log.
enum GlobalOptions {
    static let options: [Option] = [
        .value("log-level", "LEVEL", help: "Least severe log level shown: trace, debug, info, notice, warning, error or critical.", default: "info"),
        .value("log-format", "FORMAT", help: "Log line format: logfmt or json.", default: "logfmt"),
    ]

    /// Sets up swift-log from `--log-level` and `--log-format`; call once, before logging.
    static func bootstrapLogging(_ invocation: Invocation) throws(UsageError) {
        let level = try invocation.value("log-level", as: Logger.Level.self) ?? .info
        let format = try invocation.value("log-format", as: LogFormat.self) ?? .logfmt
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: level) }
    }
}

extension Logger.Level: ArgumentValue {}
extension LogFormat: ArgumentValue {}
