/// A chart by its names: states and events as raw values, each named by its description, and
/// actions, guards and delays as their labels. It is not generic, so the code that checks, draws
/// and exports charts exists once in the binary however many charts there are; each chart only
/// names itself (``Chart/outline``).
public struct ChartOutline: Sendable {
    public struct State: Sendable {
        public var name: String
        public var isFinal = false
        public var entry: [String] = []
        public var exit: [String] = []
    }

    public struct Row: Sendable {
        public var source: Int
        public var event: Int
        public var destination: Int
        /// The guard's name.
        public var condition: String?
        /// An internal row: it stays, without exit or entry actions.
        public var isInternal: Bool
        public var actions: [String]
    }

    public struct Timeout: Sendable {
        public var state: Int
        public var event: Int
        /// The delay's label: `2s`, or how a computed delay is computed.
        public var delay: String
        public var repeats: Int
        /// The delay is fixed at zero.
        public var isZero: Bool

        /// How the timeout reads on the chart picture: `after 2s`, `every 10s`, `every 1s ×3`.
        public var label: String { Self.label(delay: delay, repeats: repeats) }

        static func label(delay: String, repeats: Int) -> String {
            switch repeats {
            case 1: "after \(delay)"
            case .max: "every \(delay)"
            default: "every \(delay) ×\(repeats)"
            }
        }
    }

    public var name: String
    public var initial: Int
    /// Every state, by raw value, as last described.
    public var states: [State]
    /// Every event's name, by raw value.
    public var events: [String]
    public var rows: [Row]
    public var timeouts: [Timeout]
    /// The states described, in the order given (one described twice appears twice).
    public var described: [Int]

    /// The outline of a would-be chart; the raw values of `Spec`'s states and events must be dense.
    init<Spec: ChartSpec>(name: String, initial: Spec.State, states: [StateInfo<Spec>], rows: [StateChart.Row<Spec>], timeouts: [StateChart.Timeout<Spec>]) {
        func labels(_ actions: [Spec.Action]) -> [String] { actions.map { $0.description } }
        self.name = name
        self.initial = initial.rawValue
        self.states = Spec.State.allCases.map { State(name: $0.description) }
        for info in states {
            self.states[info.state.rawValue] = State(name: info.state.description, isFinal: info.isFinal,
                                                     entry: labels(info.entry), exit: labels(info.exit))
        }
        events = Spec.Event.allCases.map { $0.description }
        self.rows = rows.map { row in
            Row(source: row.source.rawValue, event: row.event.rawValue, destination: row.destination.rawValue,
                condition: row.condition?.name, isInternal: row.target == nil, actions: labels(row.actions))
        }
        self.timeouts = timeouts.map { timeout in
            Timeout(state: timeout.state.rawValue, event: timeout.event.rawValue, delay: timeout.delay.label, repeats: timeout.repeats,
                    isZero: timeout.delay.fixedNanoseconds == 0)
        }
        described = states.map { $0.state.rawValue }
    }
}

extension Chart {
    /// The chart by its names, for exports.
    public var outline: ChartOutline {
        ChartOutline(name: name, initial: initial, states: states, rows: rows, timeouts: timeouts)
    }
}
