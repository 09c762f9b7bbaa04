import Testing
@testable import Commands

enum Shape: String, CaseIterable, ArgumentValue { case dot, json }

@Suite struct CommandLineParserTests {
    static let tree = Command(
        "tool", abstract: "A test tool.",
        options: [.value("log-level", "LEVEL", help: "Level.")],
        subcommands: [
            Command(
                "chart", abstract: "Print a chart.",
                options: [.value("format", "FORMAT", help: "Format.", default: "dot"), .flag("json", help: "JSON."),
                          .repeated("stun", short: "s", "IP:PORT", help: "Server.")],
                arguments: [Argument("NAME", help: "Chart name.", optional: true)]
            ) { _ in .success },
            Command("need", abstract: "Needs an argument.", arguments: [Argument("FILE", help: "A file.")]) { _ in .success },
        ]
    )

    func invocation(_ arguments: [String]) throws -> Invocation {
        guard case .run(_, let invocation) = try Self.tree.parse(arguments) else {
            Issue.record("expected a command to run"); throw UsageError(command: "", message: "")
        }
        return invocation
    }

    @Test func parsesOptionsFlagsArgumentsAndInheritedOptions() throws {
        let parsed = try invocation(["chart", "--format=json", "peer", "--json", "-s", "a", "--stun", "b", "--log-level", "debug"])
        #expect(try parsed.value("format", as: Shape.self) == .json)
        #expect(parsed.flag("json"))
        #expect(try parsed.values("stun", as: String.self) == ["a", "b"])
        #expect(try parsed.argument("NAME", as: String.self) == "peer")
        #expect(try parsed.value("log-level", as: String.self) == "debug")
        #expect(parsed.commandPath == "tool chart")
    }

    @Test func badValueNamesTheOptionAndWhatIsExpected() throws {
        let parsed = try invocation(["chart", "--format", "xml"])
        #expect(throws: CommandError(UsageError(command: "tool chart", message: "invalid value 'xml' for --format (expected dot or json)"))) {
            try parsed.value("format", as: Shape.self)
        }
    }

    @Test(arguments: [
        (["nope"], "tool", "unknown command 'nope' (expected chart or need)"),
        (["chart", "--bogus"], "tool chart", "unknown option '--bogus'"),
        (["chart", "-x"], "tool chart", "unknown option '-x'"),
        (["chart", "--format"], "tool chart", "option '--format' needs a value (FORMAT)"),
        (["chart", "--json=1"], "tool chart", "option '--json' takes no value"),
        (["chart", "a", "b"], "tool chart", "unexpected argument 'b'"),
        (["need"], "tool need", "missing argument FILE"),
        ([], "tool", "missing command (expected chart or need)"),
    ])
    func usageErrorsNameTheBadArgument(arguments: [String], command: String, message: String) {
        #expect(throws: UsageError(command: command, message: message)) { try Self.tree.parse(arguments) }
    }

    @Test func helpIsGeneratedFromTheDeclaration() throws {
        guard case .help(let text) = try Self.tree.parse(["chart", "--help"]) else {
            Issue.record("expected help"); return
        }
        #expect(text.contains("USAGE: tool chart [options] [NAME]"))
        #expect(text.contains("--format FORMAT"))
        #expect(text.contains("(default: dot)"))
        #expect(text.contains("--log-level LEVEL"))
        #expect(text.contains("-s, --stun IP:PORT …"))
        guard case .help(let top) = try Self.tree.parse(["help"]) else { Issue.record("expected help"); return }
        #expect(top.contains("chart") && top.contains("Needs an argument."))
        guard case .help(let sub) = try Self.tree.parse(["help", "need"]) else { Issue.record("expected help"); return }
        #expect(sub.contains("USAGE: tool need [options] FILE"))
    }

    @Test func doubleDashEndsOptions() throws {
        let parsed = try invocation(["need", "--", "--not-an-option"])
        #expect(try parsed.argument("FILE", as: String.self) == "--not-an-option")
    }
}
