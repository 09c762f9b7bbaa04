/// One running instance of a chart: its current state and context. A pure value: handling an
/// event changes the machine and returns what the outside world must do, and nothing else
/// happens — no sockets, no clocks, no logging.
public struct Machine<Spec: ChartSpec>: Sendable {
    public let chart: Chart<Spec>
    public var state: Spec.State { storedState }
    @usableFromInline var storedState: Spec.State
    /// The extended state. Set the data an event carries here before handling the event.
    public var context: Spec.Context
    /// Counts entries into states. A timer armed on entry carries the epoch it was armed in;
    /// when it fires in a later epoch, the state it belonged to was left and it is ignored.
    public var epoch: UInt32 { storedEpoch }
    @usableFromInline var storedEpoch: UInt32 = 0

    public init(chart: Chart<Spec>, context: Spec.Context) {
        self.chart = chart
        self.storedState = chart.initial
        self.context = context
    }

    /// Enters the initial state: returns its entry actions. Call once, before any event.
    @inlinable
    public mutating func start() -> [Spec.Action] {
        let info = chart.states[state.rawValue]
        info.onEntry?(&context)
        storedEpoch &+= 1
        return info.entry
    }

    /// Handles `event`: finds the first row for the current state and event whose guard holds,
    /// applies it and returns the transition; `nil` when no row applies (the event is ignored).
    /// Allocates nothing.
    @inlinable
    public mutating func handle(_ event: Spec.Event) -> Transition<Spec>? {
        let key = state.rawValue &* chart.eventCount &+ event.rawValue
        var position = Int(chart.rowStart[key])
        let end = Int(chart.rowStart[key &+ 1])
        while position < end {
            let index = Int(chart.rowIndex[position])
            let row = chart.rows[index]
            position &+= 1
            if let condition = row.condition, !condition.test(context) { continue }
            let from = state
            row.effect?(&context)
            if let target = row.target {
                storedState = target
                storedEpoch &+= 1
                chart.states[target.rawValue].onEntry?(&context)
            }
            return Transition(from: from, event: event, to: state, isInternal: row.target == nil,
                              row: index, actions: chart.rowActions[index])
        }
        return nil
    }

    /// Whether the machine is in a final state.
    @inlinable
    public var isFinished: Bool { chart.states[state.rawValue].isFinal }
}

/// What handling one event did.
public struct Transition<Spec: ChartSpec>: Sendable {
    public let from: Spec.State
    public let event: Spec.Event
    public let to: Spec.State
    /// An internal transition: the state was not left, its timers keep running.
    public let isInternal: Bool
    /// The index of the row that fired in the chart's ``Chart/rows``.
    public let row: Int
    /// The actions to execute, in order: exit actions, the row's actions, entry actions.
    public let actions: [Spec.Action]

    @inlinable
    init(from: Spec.State, event: Spec.Event, to: Spec.State, isInternal: Bool, row: Int, actions: [Spec.Action]) {
        self.from = from
        self.event = event
        self.to = to
        self.isInternal = isInternal
        self.row = row
        self.actions = actions
    }
}
