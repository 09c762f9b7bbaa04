import Output

extension Chart {
    /// The chart as Graphviz DOT (``ChartOutline/dot()``).
    public func dot() -> String { outline.dot() }

    /// The chart as JSON (``ChartOutline/json()``).
    public func json() -> JSON { outline.json() }
}

extension ChartOutline {
    /// The chart as Graphviz DOT: one node per state (final states drawn with a double border),
    /// one edge per row labelled `event [guard] / actions`, with `(after 2s)` when a timeout of
    /// the source fires the event. Internal transitions are dashed self-loops.
    public func dot() -> String {
        var lines = [
            "digraph \(Self.dotID(name)) {",
            "  rankdir=LR;",
            "  node [shape=box, style=rounded, fontname=\"Helvetica\"];",
            "  edge [fontname=\"Helvetica\", fontsize=10];",
            "  __start [shape=point, width=0.15];",
        ]
        for state in states {
            var attributes = "label=\(Self.dotString(label(of: state)))"
            if state.isFinal { attributes += ", peripheries=2" }
            lines.append("  \(Self.dotID(state.name)) [\(attributes)];")
        }
        lines.append("  __start -> \(Self.dotID(states[initial].name));")
        for row in rows {
            var attributes = "label=\(Self.dotString(label(of: row)))"
            if row.isInternal { attributes += ", style=dashed" }
            lines.append("  \(Self.dotID(states[row.source].name)) -> \(Self.dotID(states[row.destination].name)) [\(attributes)];")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The chart as JSON: states with their entry/exit actions and timeouts, rows in table order.
    public func json() -> JSON {
        func strings(_ values: [String]) -> JSON { .array(values.map { .string($0) }) }
        return .object([
            ("name", .string(name)),
            ("initial", .string(states[initial].name)),
            ("states", .array(states.indices.map { index in
                .object([
                    ("name", .string(states[index].name)),
                    ("final", .bool(states[index].isFinal)),
                    ("entry", strings(states[index].entry)),
                    ("exit", strings(states[index].exit)),
                    ("timeouts", .array(timeouts.filter { $0.state == index }.map { timeout in
                        .object([
                            ("delay", .string(timeout.delay)),
                            ("repeats", .int(Int64(timeout.repeats))),
                            ("event", .string(events[timeout.event])),
                        ])
                    })),
                ])
            })),
            ("rows", .array(rows.map { row in
                .object([
                    ("from", .string(states[row.source].name)),
                    ("event", .string(events[row.event])),
                    ("guard", row.condition.map { .string($0) } ?? .null),
                    ("to", .string(states[row.destination].name)),
                    ("internal", .bool(row.isInternal)),
                    ("actions", strings(row.actions)),
                ])
            })),
        ])
    }

    private func label(of state: State) -> String {
        var label = state.name
        if !state.entry.isEmpty { label += "\nentry / " + state.entry.joined(separator: ", ") }
        if !state.exit.isEmpty { label += "\nexit / " + state.exit.joined(separator: ", ") }
        return label
    }

    private func label(of row: Row) -> String {
        var label = events[row.event]
        if let timer = timeouts.first(where: { $0.state == row.source && $0.event == row.event }) { label += " (\(timer.label))" }
        if let condition = row.condition { label += " [\(condition)]" }
        if !row.actions.isEmpty { label += "\n/ " + row.actions.joined(separator: ", ") }
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
