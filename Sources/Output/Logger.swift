import Time

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `time=… level=info msg=transition peer=p1 from=punching …`, one line per record.
    case logfmt
    /// One JSON object per line.
    case json
}

/// Where a process's log lines go, how they look, and from which level on: standard error as
/// logfmt at info by default; `lanrage --log-level/--log-format` set it once at start.
public final class LogOutput: @unchecked Sendable {
    public var level: Logger.Level
    public var format: LogFormat
    public var sink: (String) -> Void

    public init(level: Logger.Level = .info, format: LogFormat = .logfmt, sink: @escaping (String) -> Void = { StandardStreams.error($0) }) {
        self.level = level
        self.format = format
        self.sink = sink
    }

    /// The process's output, which every logger writes to unless it was given another.
    nonisolated(unsafe) public static var standard = LogOutput()
}

/// A named logger writing one structured line per record, as logfmt or JSON (see ``LogOutput``):
/// the same calls as swift-log's `Logger` (which the project does not use: it cannot be built for
/// the routers' Embedded Swift, being made of non-class existentials), and the same lines.
public struct Logger: Sendable {
    /// How severe a record is, least first.
    public enum Level: String, CaseIterable, Sendable, Comparable {
        case trace, debug, info, notice, warning, error, critical

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }

        private var rank: Int {
            switch self {
            case .trace: 0
            case .debug: 1
            case .info: 2
            case .notice: 3
            case .warning: 4
            case .error: 5
            case .critical: 6
            }
        }
    }

    /// A record's text or a metadata value: written like a string literal, with interpolations.
    public struct Text: ExpressibleByStringInterpolation, CustomStringConvertible, Sendable, Equatable {
        public let description: String
        public init(stringLiteral value: String) { description = value }
        public init(stringInterpolation: DefaultStringInterpolation) { description = String(stringInterpolation: stringInterpolation) }
        public init(_ text: String) { description = text }
    }

    public typealias Message = Text
    public typealias Metadata = [String: Text]

    /// Metadata of counters: each name with its count in decimal.
    public static func counters(_ pairs: [(String, Int)]) -> Metadata {
        var metadata: Metadata = [:]
        for (name, count) in pairs { metadata[name] = Text(String(count)) }
        return metadata
    }

    public let label: String
    /// Records below this level are not written (nor is their text built).
    public var logLevel: Logger.Level
    /// Fields added to every record of this logger.
    public var metadata: Metadata = [:]
    private let output: LogOutput

    /// A logger writing to `output` (the process's by default), at its level.
    public init(label: String, output: LogOutput = LogOutput.standard) {
        self.label = label
        self.output = output
        logLevel = output.level
    }

    public subscript(metadataKey key: String) -> Text? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Level, _ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) {
        guard level >= logLevel else { return }
        var fields = self.metadata
        for (key, value) in metadata() ?? [:] { fields[key] = value }
        // Keys in a stable order: the record's own keys are unordered, so sort them.
        output.sink(Self.line(time: WallClock.timestamp(), level: level, label: label, message: message().description,
                              fields: fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value.description) }, format: output.format))
    }

    public func trace(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .trace, message(), metadata: metadata()) }
    public func debug(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .debug, message(), metadata: metadata()) }
    public func info(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .info, message(), metadata: metadata()) }
    public func notice(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .notice, message(), metadata: metadata()) }
    public func warning(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .warning, message(), metadata: metadata()) }
    public func error(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .error, message(), metadata: metadata()) }
    public func critical(_ message: @autoclosure () -> Message, metadata: @autoclosure () -> Metadata? = nil) { log(level: .critical, message(), metadata: metadata()) }

    /// One record as a line.
    public static func line(time: String, level: Level, label: String, message: String, fields: [(String, String)],
                            format: LogFormat) -> String {
        switch format {
        case .logfmt:
            var line = "time=\(time) level=\(level.rawValue) logger=\(quoted(label)) msg=\(quoted(message))"
            for (key, value) in fields { line += " \(key)=\(quoted(value))" }
            return line + "\n"
        case .json:
            var members: [(String, JSON)] = [
                ("time", .string(time)), ("level", .string(level.rawValue)), ("logger", .string(label)), ("msg", .string(message)),
            ]
            members += fields.map { ($0.0, .string($0.1)) }
            return JSON.object(members).rendered() + "\n"
        }
    }

    /// A logfmt value: bare when it has no spaces, quotes, `=` or control characters, quoted otherwise.
    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.unicodeScalars.contains {
            $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || $0.value < 0x20
        }
        guard needsQuotes else { return value }
        var output = ""
        JSON.writeString(value, to: &output)
        return output
    }
}
