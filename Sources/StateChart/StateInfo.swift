/// What a chart says about one state: its entry and exit actions, and whether it is final.
/// States a chart does not describe have no actions and are not final.
public struct StateInfo<Spec: ChartSpec>: Sendable {
    public let state: Spec.State
    public let entry: [Spec.Action]
    public let exit: [Spec.Action]
    public let isFinal: Bool
    /// Changes to the context on every entry (after the row's own effect).
    public let onEntry: (@Sendable (inout Spec.Context) -> Void)?

    public init(
        _ state: Spec.State, entry: [Spec.Action] = [], exit: [Spec.Action] = [], final isFinal: Bool = false,
        onEntry: (@Sendable (inout Spec.Context) -> Void)? = nil
    ) {
        self.state = state
        self.entry = entry
        self.exit = exit
        self.isFinal = isFinal
        self.onEntry = onEntry
    }
}
