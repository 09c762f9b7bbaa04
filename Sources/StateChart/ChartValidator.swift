extension Chart {
    /// Every problem of a would-be chart, in a stable order (empty when the chart is sound).
    public static func validate(
        initial: Spec.State, states: [StateInfo<Spec>], rows: [Row<Spec>], timeouts: [Timeout<Spec>]
    ) -> [ChartProblem] {
        var problems: [ChartProblem] = []
        func name(_ value: some CustomStringConvertible) -> String { value.description }

        let allStates = Array(Spec.State.allCases)
        if allStates.map({ $0.rawValue }) != Array(0..<allStates.count) {
            problems.append(.rawValuesNotDense(type: "State"))
        }
        let allEvents = Array(Spec.Event.allCases)
        if allEvents.map({ $0.rawValue }) != Array(0..<allEvents.count) {
            problems.append(.rawValuesNotDense(type: "Event"))
        }
        guard problems.isEmpty else { return problems }

        var finals = Set<Spec.State>()
        var described = Set<Spec.State>()
        for info in states {
            if !described.insert(info.state).inserted { problems.append(.stateDescribedTwice(state: name(info.state))) }
            if info.isFinal { finals.insert(info.state) }
        }

        // Reachability: rows and nothing else move a machine between states.
        var reached: Set<Spec.State> = [initial]
        var frontier = [initial]
        while let state = frontier.popLast() {
            for row in rows where row.source == state {
                if reached.insert(row.destination).inserted { frontier.append(row.destination) }
            }
        }
        for state in allStates where !reached.contains(state) { problems.append(.unreachable(state: name(state))) }

        for state in allStates {
            let exits = rows.contains { $0.source == state && $0.destination != state }
            if finals.contains(state) {
                if exits { problems.append(.finalStateHasExits(state: name(state))) }
            } else if !exits {
                problems.append(.noWayOut(state: name(state)))
            }
        }

        // Rows for one (state, event): guards must differ, and only the last may go without one.
        var seen: [Spec.State: [Spec.Event: [String?]]] = [:]
        for row in rows {
            let guardName = row.condition?.name
            let earlier = seen[row.source, default: [:]][row.event, default: []]
            if earlier.contains(guardName) {
                problems.append(.ambiguous(state: name(row.source), event: name(row.event), guard: guardName))
            } else if earlier.contains(nil) {
                problems.append(.shadowed(state: name(row.source), event: name(row.event), guard: guardName))
            }
            seen[row.source, default: [:]][row.event, default: []].append(guardName)
        }

        for timeout in timeouts {
            if seen[timeout.state]?[timeout.event] == nil {
                problems.append(.unhandledTimeout(state: name(timeout.state), event: name(timeout.event)))
            }
            if timeout.repeats < 1 || (timeout.repeats > 1 && timeout.delay.fixedNanoseconds == 0) {
                problems.append(.badTimeout(state: name(timeout.state), event: name(timeout.event)))
            }
        }
        return problems
    }
}
