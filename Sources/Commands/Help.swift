extension Command {
    /// The `--help` text for the last command of `path`, listing its own options and those it inherits.
    public static func help(for path: [Command]) -> String {
        let command = path[path.count - 1]
        let name = path.map { $0.name }.joined(separator: " ")
        var usage = "USAGE: \(name)"
        if !command.subcommands.isEmpty { usage += " <command>" }
        let options = path.reversed().flatMap { $0.options }
        if !options.isEmpty { usage += " [options]" }
        for argument in command.arguments { usage += argument.isOptional ? " [\(argument.name)]" : " \(argument.name)" }

        var text = "\(name) — \(command.abstract)\n\n\(usage)\n"
        if !command.arguments.isEmpty {
            text += "\nARGUMENTS:\n" + table(command.arguments.map { ($0.name, $0.help) })
        }
        if !command.subcommands.isEmpty {
            text += "\nCOMMANDS:\n" + table(command.subcommands.map { ($0.name, $0.abstract) })
        }
        var rows = options.map { option -> (String, String) in
            var spelling = option.short.map { "-\($0), " } ?? "    "
            spelling += "--\(option.long)"
            if option.kind != .flag { spelling += " \(option.valueName)" }
            if option.kind == .repeated { spelling += " …" }
            var help = option.help
            if let defaultValue = option.defaultValue { help += " (default: \(defaultValue))" }
            return (spelling, help)
        }
        rows.append(("-h, --help", "Show this help."))
        text += "\nOPTIONS:\n" + table(rows)
        if !command.discussion.isEmpty { text += "\n" + command.discussion + "\n" }
        if !command.subcommands.isEmpty { text += "\nSee '\(name) help <command>' for a command's options.\n" }
        return text
    }

    private static func table(_ rows: [(String, String)]) -> String {
        let width = min(30, rows.map { $0.0.count }.max() ?? 0)
        return rows.map { left, right in
            let padding = left.count < width ? String(repeating: " ", count: width - left.count) : ""
            let separator = left.count > width ? "\n  " + String(repeating: " ", count: width) + "  " : "  "
            return "  \(left)\(padding)\(separator)\(right)\n"
        }.joined()
    }
}
