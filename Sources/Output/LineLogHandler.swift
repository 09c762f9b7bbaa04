import Logging

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `time=… level=info msg=transition peer=p1 from=punching …`, one line per record.
    case logfmt
    /// One JSON object per line.
    case json
}

/// A swift-log handler that writes one structured line per record to standard error
/// (or to any sink, for tests), as logfmt or JSON.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: LogFormat
    private let sink: @Sendable (String) -> Void

    public init(
        label: String, format: LogFormat, level: Logger.Level,
        sink: @escaping @Sendable (String) -> Void = { StandardStreams.error($0) }
    ) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        // Keys in a stable order: the record's own keys as given are unordered, so sort them.
        let fields = merged.sorted { $0.key < $1.key }.map { ($0.key, Self.text(of: $0.value)) }
        sink(Self.line(
            time: WallClock.timestamp(), level: event.level, label: label, message: "\(event.message)",
            fields: fields, format: format
        ))
    }

    /// Formats one record; exposed for tests.
    public static func line(
        time: String, level: Logger.Level, label: String, message: String, fields: [(String, String)],
        format: LogFormat
    ) -> String {
        switch format {
        case .logfmt:
            var line = "time=\(time) level=\(level) logger=\(quoted(label)) msg=\(quoted(message))"
            for (key, value) in fields { line += " \(key)=\(quoted(value))" }
            return line + "\n"
        case .json:
            var members: [(String, JSON)] = [
                ("time", .string(time)), ("level", .string("\(level)")), ("logger", .string(label)),
                ("msg", .string(message)),
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

    private static func text(of value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let items): items.map { text(of: $0) }.joined(separator: ",")
        case .dictionary(let dictionary):
            dictionary.sorted { $0.key < $1.key }.map { "\($0.key):\(text(of: $0.value))" }.joined(separator: ",")
        }
    }
}
