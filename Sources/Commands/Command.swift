import Output

/// A command or subcommand, declared as data: its options, arguments, subcommands and the
/// function that runs it. Help text and errors are generated from the declaration.
public struct Command: Sendable {
    public var name: String
    /// One line: what the command does.
    public var abstract: String
    /// Paragraphs shown by `--help` after the option list.
    public var discussion: String
    public var options: [Option]
    public var arguments: [Argument]
    public var subcommands: [Command]
    /// Runs the command; `nil` for a command that only groups subcommands.
    public var run: (@Sendable (Invocation) throws(CommandError) -> ExitCode)?

    public init(
        _ name: String, abstract: String, discussion: String = "", options: [Option] = [],
        arguments: [Argument] = [], subcommands: [Command] = [],
        run: (@Sendable (Invocation) throws(CommandError) -> ExitCode)? = nil
    ) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.options = options
        self.arguments = arguments
        self.subcommands = subcommands
        self.run = run
    }
}

/// A named option: `--format dot`, `--json`, `-v`.
public struct Option: Sendable {
    public enum Kind: Sendable, Equatable {
        /// Present or absent; takes no value.
        case flag
        /// Takes one value; given twice, the last one wins.
        case single
        /// Takes one value each time and may be repeated.
        case repeated
    }

    public var long: String
    public var short: Character?
    public var kind: Kind
    /// The placeholder in help (`FORMAT`); unused for flags.
    public var valueName: String
    public var help: String
    /// Shown in help as the default; the command applies it.
    public var defaultValue: String?

    public static func flag(_ long: String, short: Character? = nil, help: String) -> Option {
        Option(long: long, short: short, kind: .flag, valueName: "", help: help, defaultValue: nil)
    }

    public static func value(
        _ long: String, short: Character? = nil, _ valueName: String, help: String, default defaultValue: String? = nil
    ) -> Option {
        Option(long: long, short: short, kind: .single, valueName: valueName, help: help, defaultValue: defaultValue)
    }

    public static func repeated(_ long: String, short: Character? = nil, _ valueName: String, help: String) -> Option {
        Option(long: long, short: short, kind: .repeated, valueName: valueName, help: help, defaultValue: nil)
    }
}

/// A positional argument.
public struct Argument: Sendable {
    public var name: String
    public var help: String
    public var isOptional: Bool

    public init(_ name: String, help: String, optional: Bool = false) {
        self.name = name
        self.help = help
        self.isOptional = optional
    }
}
