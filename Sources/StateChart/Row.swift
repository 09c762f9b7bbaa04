/// One edge of a chart: in `source`, on `event`, if `guard` holds, go to `target` and do `actions`.
///
/// A row with a target is an external transition: the source's exit actions, the row's actions and
/// the target's entry actions run, and the source's timers are cancelled and the target's armed —
/// even when the target is the source itself. A row made with `stay:` is internal: only its actions
/// run and the state's timers keep running.
public struct Row<Spec: ChartSpec>: Sendable {
    public let source: Spec.State
    public let event: Spec.Event
    public let condition: Guard<Spec.Context>?
    /// `nil` for an internal transition.
    public let target: Spec.State?
    public let actions: [Spec.Action]
    /// Changes to the context made when the row fires, before the target's entry.
    public let effect: (@Sendable (inout Spec.Context) -> Void)?

    /// An external transition.
    public init(
        _ source: Spec.State, on event: Spec.Event, when condition: Guard<Spec.Context>? = nil,
        to target: Spec.State, do actions: [Spec.Action] = [],
        update effect: (@Sendable (inout Spec.Context) -> Void)? = nil
    ) {
        self.source = source
        self.event = event
        self.condition = condition
        self.target = target
        self.actions = actions
        self.effect = effect
    }

    /// An internal transition: stay in `source`, do `actions`, keep its timers.
    public init(
        _ source: Spec.State, on event: Spec.Event, when condition: Guard<Spec.Context>? = nil,
        stay actions: [Spec.Action], update effect: (@Sendable (inout Spec.Context) -> Void)? = nil
    ) {
        self.source = source
        self.event = event
        self.condition = condition
        self.target = nil
        self.actions = actions
        self.effect = effect
    }

    /// Where the row leads: its target, or its source for an internal transition.
    public var destination: Spec.State { target ?? source }
}
