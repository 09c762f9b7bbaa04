/// A state chart: a table of rows plus per-state timeouts, entry and exit actions.
///
/// The same table drives the machines (``Machine``), the validator, the DOT and JSON pictures.
/// Building a chart validates it and reports every problem at once; a chart that exists is valid.
/// The chart is compiled into flat tables so that handling an event allocates nothing.
public final class Chart<Spec: ChartSpec>: Sendable {
    public let name: String
    public let initial: Spec.State
    public let rows: [Row<Spec>]
    public let timeouts: [Timeout<Spec>]
    /// Indexed by state raw value; states the chart did not describe get an empty entry.
    public let states: [StateInfo<Spec>]

    // Compiled tables. Rows for (state, event) are rowIndex[rowStart[k]..<rowStart[k + 1]],
    // k = state * eventCount + event, in table order; timeouts likewise by state.
    @usableFromInline let eventCount: Int
    @usableFromInline let rowStart: [Int32]
    @usableFromInline let rowIndex: [Int32]
    /// Per row: the source's exit actions (external rows only), the row's actions, the target's entry actions.
    @usableFromInline let rowActions: [[Spec.Action]]
    @usableFromInline let timeoutStart: [Int32]
    @usableFromInline let timeoutIndex: [Int32]

    public init(
        name: String, initial: Spec.State, states: [StateInfo<Spec>] = [], rows: [Row<Spec>],
        timeouts: [Timeout<Spec>] = []
    ) throws(ChartValidationError) {
        let problems = Chart.validate(initial: initial, states: states, rows: rows, timeouts: timeouts)
        guard problems.isEmpty else { throw ChartValidationError(chart: name, problems: problems) }

        self.name = name
        self.initial = initial
        self.rows = rows
        self.timeouts = timeouts
        var infos = Spec.State.allCases.map { StateInfo<Spec>($0) }
        for info in states { infos[info.state.rawValue] = info }
        self.states = infos

        let stateCount = Spec.State.allCases.count
        eventCount = Spec.Event.allCases.count
        var buckets = [[Int32]](repeating: [], count: stateCount * eventCount)
        for (index, row) in rows.enumerated() {
            buckets[row.source.rawValue * eventCount + row.event.rawValue].append(Int32(index))
        }
        (rowStart, rowIndex) = Chart.flatten(buckets)
        var timeoutBuckets = [[Int32]](repeating: [], count: stateCount)
        for (index, timeout) in timeouts.enumerated() { timeoutBuckets[timeout.state.rawValue].append(Int32(index)) }
        (timeoutStart, timeoutIndex) = Chart.flatten(timeoutBuckets)
        rowActions = rows.map { row in
            guard let target = row.target else { return row.actions }
            return infos[row.source.rawValue].exit + row.actions + infos[target.rawValue].entry
        }
    }

    private static func flatten(_ buckets: [[Int32]]) -> (start: [Int32], index: [Int32]) {
        var start: [Int32] = [0]
        var index: [Int32] = []
        for bucket in buckets {
            index += bucket
            start.append(Int32(index.count))
        }
        return (start, index)
    }


    /// The timeouts `state` arms on entry, as indices into ``timeouts``, in table order.
    @inlinable
    public func timeoutIndices(of state: Spec.State) -> ArraySlice<Int32> {
        timeoutIndex[Int(timeoutStart[state.rawValue])..<Int(timeoutStart[state.rawValue + 1])]
    }
}
