extension Chart {
    /// Every problem of a would-be chart, in a stable order (empty when the chart is sound).
    public static func validate(
        initial: Spec.State, states: [StateInfo<Spec>], rows: [Row<Spec>], timeouts: [Timeout<Spec>]
    ) -> [ChartProblem] {
        var problems: [ChartProblem] = []
        if Spec.State.allCases.map({ $0.rawValue }) != Array(0..<Spec.State.allCases.count) {
            problems.append(.rawValuesNotDense(type: "State"))
        }
        if Spec.Event.allCases.map({ $0.rawValue }) != Array(0..<Spec.Event.allCases.count) {
            problems.append(.rawValuesNotDense(type: "Event"))
        }
        guard problems.isEmpty else { return problems }
        return ChartOutline(name: "", initial: initial, states: states, rows: rows, timeouts: timeouts).problems
    }
}

extension ChartOutline {
    /// Every problem of the chart, in a stable order (empty when the chart is sound).
    public var problems: [ChartProblem] {
        var problems: [ChartProblem] = []
        var described = [Bool](repeating: false, count: states.count)
        for state in self.described {
            if described[state] { problems.append(.stateDescribedTwice(state: states[state].name)) }
            described[state] = true
        }

        // Reachability: rows and nothing else move a machine between states.
        var reached = [Bool](repeating: false, count: states.count)
        reached[initial] = true
        var frontier = [initial]
        while let state = frontier.popLast() {
            for row in rows where row.source == state && !reached[row.destination] {
                reached[row.destination] = true
                frontier.append(row.destination)
            }
        }
        for state in states.indices where !reached[state] { problems.append(.unreachable(state: states[state].name)) }

        for state in states.indices {
            let exits = rows.contains { $0.source == state && $0.destination != state }
            if states[state].isFinal {
                if exits { problems.append(.finalStateHasExits(state: states[state].name)) }
            } else if !exits {
                problems.append(.noWayOut(state: states[state].name))
            }
        }

        // Rows for one (state, event): guards must differ, and only the last may go without one.
        var seen = [[String?]?](repeating: nil, count: states.count * events.count)
        for row in rows {
            let key = row.source * events.count + row.event
            let earlier = seen[key] ?? []
            if earlier.contains(row.condition) {
                problems.append(.ambiguous(state: states[row.source].name, event: events[row.event], guard: row.condition))
            } else if earlier.contains(nil) {
                problems.append(.shadowed(state: states[row.source].name, event: events[row.event], guard: row.condition))
            }
            seen[key] = earlier + [row.condition]
        }

        for timeout in timeouts {
            let (state, event) = (states[timeout.state].name, events[timeout.event])
            if seen[timeout.state * events.count + timeout.event] == nil { problems.append(.unhandledTimeout(state: state, event: event)) }
            if timeout.repeats < 1 || (timeout.repeats > 1 && timeout.isZero) { problems.append(.badTimeout(state: state, event: event)) }
        }
        return problems
    }
}
