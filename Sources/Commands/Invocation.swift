/// A parsed command line, handed to the command's `run` function.
public struct Invocation: Sendable {
    /// The command path as typed, e.g. `lanrage chart`, for messages.
    public let commandPath: String
    /// Option values by long name, in the order given; a flag has one empty value per use.
    let options: [String: [String]]
    /// Positional values by argument name.
    let arguments: [String: String]

    public init(commandPath: String, options: [String: [String]], arguments: [String: String]) {
        self.commandPath = commandPath
        self.options = options
        self.arguments = arguments
    }

    /// Whether the flag `--long` was given.
    public func flag(_ long: String) -> Bool { options[long] != nil }

    /// The last value given for `--long`, parsed; `nil` when absent.
    public func value<Value: ArgumentValue>(_ long: String, as type: Value.Type = Value.self) throws(CommandError) -> Value? {
        guard let text = options[long]?.last else { return nil }
        return try parse(text, Value.self, what: "--\(long)")
    }

    /// Every value given for the repeatable `--long`, parsed, in order.
    public func values<Value: ArgumentValue>(_ long: String, as type: Value.Type = Value.self) throws(CommandError) -> [Value] {
        var parsed: [Value] = []
        for text in options[long] ?? [] { parsed.append(try parse(text, Value.self, what: "--\(long)")) }
        return parsed
    }

    /// The positional argument `name`, parsed; `nil` when an optional argument was left out.
    public func argument<Value: ArgumentValue>(_ name: String, as type: Value.Type = Value.self) throws(CommandError) -> Value? {
        guard let text = arguments[name] else { return nil }
        return try parse(text, Value.self, what: name)
    }

    /// A usage error about this command, for checks a command makes itself.
    public func usageError(_ message: String) -> CommandError {
        CommandError(UsageError(command: commandPath, message: message))
    }

    private func parse<Value: ArgumentValue>(_ text: String, _ type: Value.Type, what: String) throws(CommandError) -> Value {
        guard let value = Value(argument: text) else {
            throw usageError("invalid value '\(text)' for \(what) (expected \(Value.expectation))")
        }
        return value
    }
}
