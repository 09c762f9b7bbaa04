/// What a command line asks for: run a command, or show help for one.
public enum ParsedCommandLine: Sendable {
    case run(Command, Invocation)
    case help(String)
}

extension Command {
    /// Parses `arguments` (without the program name) against this command tree.
    /// Options declared on a command apply to all its subcommands too (`--log-level` on the root).
    public func parse(_ arguments: [String]) throws(UsageError) -> ParsedCommandLine {
        var path: [Command] = [self]
        var options: [String: [String]] = [:]
        var positionals: [String] = []
        var tokens = arguments[...]
        var onlyPositionals = false
        func pathName() -> String { path.map { $0.name }.joined(separator: " ") }
        func error(_ message: String) -> UsageError { UsageError(command: pathName(), message: message) }
        func findOption(_ match: (Option) -> Bool) -> Option? {
            for command in path.reversed() { if let option = command.options.first(where: match) { return option } }
            return nil
        }

        while let token = tokens.popFirst() {
            let current = path[path.count - 1]
            if onlyPositionals || token == "-" || !token.hasPrefix("-") {
                if !onlyPositionals, positionals.isEmpty, !current.subcommands.isEmpty {
                    if token == "help" {
                        var target = path
                        for name in tokens {
                            guard let next = target.last!.subcommands.first(where: { $0.name == name }) else {
                                throw error("unknown command '\(name)' (expected \(current.subcommandList))")
                            }
                            target.append(next)
                        }
                        return .help(Command.help(for: target))
                    }
                    guard let next = current.subcommands.first(where: { $0.name == token }) else {
                        throw error("unknown command '\(token)' (expected \(current.subcommandList))")
                    }
                    path.append(next)
                    continue
                }
                positionals.append(token)
                continue
            }
            if token == "--" { onlyPositionals = true; continue }
            if token == "--help" || token == "-h" { return .help(Command.help(for: path)) }

            let option: Option
            var inlineValue: String?
            let spelled: String
            if token.hasPrefix("--") {
                let body = token.dropFirst(2)
                let name = body.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
                if let equals = body.firstIndex(of: "=") { inlineValue = String(body[body.index(after: equals)...]) }
                spelled = "--\(name)"
                guard let found = findOption({ $0.long == name }) else { throw error("unknown option '\(spelled)'") }
                option = found
            } else {
                guard token.count == 2, let found = findOption({ $0.short == token.last }) else {
                    throw error("unknown option '\(token)'")
                }
                option = found
                spelled = token
            }
            if option.kind == .flag {
                if inlineValue != nil { throw error("option '\(spelled)' takes no value") }
                options[option.long, default: []].append("")
            } else {
                guard let value = inlineValue ?? tokens.popFirst() else {
                    throw error("option '\(spelled)' needs a value (\(option.valueName))")
                }
                options[option.long, default: []].append(value)
            }
        }

        let command = path[path.count - 1]
        guard command.run != nil else {
            throw error("missing command (expected \(command.subcommandList))")
        }
        var named: [String: String] = [:]
        for (index, value) in positionals.enumerated() {
            guard index < command.arguments.count else { throw error("unexpected argument '\(value)'") }
            named[command.arguments[index].name] = value
        }
        if let missing = command.arguments.dropFirst(positionals.count).first(where: { !$0.isOptional }) {
            throw error("missing argument \(missing.name)")
        }
        return .run(command, Invocation(commandPath: pathName(), options: options, arguments: named))
    }

    var subcommandList: String {
        let names = subcommands.map { $0.name }
        guard names.count > 1 else { return names.first ?? "nothing" }
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
}
