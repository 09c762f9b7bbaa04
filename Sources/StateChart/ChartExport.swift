import Output

extension Chart {
    /// The chart as Graphviz DOT: one node per state (final states drawn with a double border),
    /// one edge per row labelled `event [guard] / actions`, with `(after 2s)` when a timeout of
    /// the source fires the event. Internal transitions are dashed self-loops.
    public func dot() -> String {
        var lines = [
            "digraph \(Chart.dotID(name)) {",
            "  rankdir=LR;",
            "  node [shape=box, style=rounded, fontname=\"Helvetica\"];",
            "  edge [fontname=\"Helvetica\", fontsize=10];",
            "  __start [shape=point, width=0.15];",
        ]
        for info in states {
            var attributes = "label=\(Chart.dotString(stateLabel(info)))"
            if info.isFinal { attributes += ", peripheries=2" }
            lines.append("  \(Chart.dotID("\(info.state)")) [\(attributes)];")
        }
        lines.append("  __start -> \(Chart.dotID("\(initial)"));")
        for row in rows {
            var attributes = "label=\(Chart.dotString(edgeLabel(row)))"
            if row.target == nil { attributes += ", style=dashed" }
            lines.append("  \(Chart.dotID("\(row.source)")) -> \(Chart.dotID("\(row.destination)")) [\(attributes)];")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The chart as JSON: states with their entry/exit actions and timeouts, rows in table order.
    public func json() -> JSON {
        .object([
            ("name", .string(name)),
            ("initial", .string("\(initial)")),
            ("states", .array(states.map { info in
                .object([
                    ("name", .string("\(info.state)")),
                    ("final", .bool(info.isFinal)),
                    ("entry", .array(info.entry.map { .string("\($0)") })),
                    ("exit", .array(info.exit.map { .string("\($0)") })),
                    ("timeouts", .array(timeoutIndices(of: info.state).map { index in
                        let timeout = timeouts[Int(index)]
                        return .object([
                            ("delay", .string(timeout.delay.label)),
                            ("repeats", .int(Int64(timeout.repeats))),
                            ("event", .string("\(timeout.event)")),
                        ])
                    })),
                ])
            })),
            ("rows", .array(rows.map { row in
                .object([
                    ("from", .string("\(row.source)")),
                    ("event", .string("\(row.event)")),
                    ("guard", row.condition.map { .string($0.name) } ?? .null),
                    ("to", .string("\(row.destination)")),
                    ("internal", .bool(row.target == nil)),
                    ("actions", .array(row.actions.map { .string("\($0)") })),
                ])
            })),
        ])
    }

    private func stateLabel(_ info: StateInfo<Spec>) -> String {
        var label = "\(info.state)"
        if !info.entry.isEmpty { label += "\nentry / " + info.entry.map { "\($0)" }.joined(separator: ", ") }
        if !info.exit.isEmpty { label += "\nexit / " + info.exit.map { "\($0)" }.joined(separator: ", ") }
        return label
    }

    private func edgeLabel(_ row: Row<Spec>) -> String {
        var label = "\(row.event)"
        let timers = timeoutIndices(of: row.source).map { timeouts[Int($0)] }
        if let timer = timers.first(where: { $0.event == row.event }) { label += " (\(timer.label))" }
        if let condition = row.condition { label += " [\(condition.name)]" }
        if !row.actions.isEmpty { label += "\n/ " + row.actions.map { "\($0)" }.joined(separator: ", ") }
        return label
    }

    static func dotID(_ text: String) -> String {
        // ASCII letters, digits and "_" (Unicode's letter property would bring its tables into the binary).
        let plain = text.utf8.allSatisfy { ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
        return plain && !text.isEmpty ? text : dotString(text)
    }

    static func dotString(_ text: String) -> String {
        var quoted = "\""
        for character in text {
            switch character {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            default: quoted.append(character)
            }
        }
        return quoted + "\""
    }
}
