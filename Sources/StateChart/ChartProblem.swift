/// Something wrong with a chart's table, found by validation before the chart can run.
public enum ChartProblem: Hashable, Sendable, CustomStringConvertible {
    /// No sequence of rows leads from the initial state to this one.
    case unreachable(state: String)
    /// A state that is not final has no row leading to another state: a machine entering it is stuck.
    case noWayOut(state: String)
    /// Two rows for the same state and event with the same guard (or both without one).
    case ambiguous(state: String, event: String, guard: String?)
    /// A row that can never fire: an earlier row for the same state and event has no guard.
    case shadowed(state: String, event: String, guard: String?)
    /// A state's timeout fires an event that no row of that state handles.
    case unhandledTimeout(state: String, event: String)
    /// A final state with rows leading out of it.
    case finalStateHasExits(state: String)
    /// A timeout that fires zero times, or a repeating timeout with a fixed zero delay.
    case badTimeout(state: String, event: String)
    /// The enum's raw values are not 0, 1, 2, … in order.
    case rawValuesNotDense(type: String)
    /// Two `StateInfo` entries for one state.
    case stateDescribedTwice(state: String)

    public var description: String {
        switch self {
        case .unreachable(let state): "state '\(state)' is unreachable from the initial state"
        case .noWayOut(let state): "state '\(state)' is not final but no row leads out of it"
        case .ambiguous(let state, let event, let condition):
            "'\(event)' in state '\(state)' is defined twice \(condition.map { "with the same guard [\($0)]" } ?? "without a guard")"
        case .shadowed(let state, let event, let condition):
            "row '\(event)' [\(condition ?? "")] in state '\(state)' can never fire: an earlier row for it has no guard"
        case .unhandledTimeout(let state, let event):
            "state '\(state)' has a timeout firing '\(event)' but no row of '\(state)' handles '\(event)'"
        case .finalStateHasExits(let state): "final state '\(state)' has rows leading out of it"
        case .badTimeout(let state, let event): "timeout '\(event)' of state '\(state)' would never fire or fire without pause"
        case .rawValuesNotDense(let type): "the raw values of \(type) must be 0, 1, 2, … in declaration order"
        case .stateDescribedTwice(let state): "state '\(state)' is described twice"
        }
    }
}

/// A chart that failed validation, with every problem found.
public struct ChartValidationError: Error, Sendable, CustomStringConvertible {
    public let chart: String
    public let problems: [ChartProblem]

    public var description: String {
        "chart '\(chart)' is invalid:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}
