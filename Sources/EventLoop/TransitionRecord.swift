import StateChart
import Time

/// One transition as the scheduler saw it: what the trace log line and tests are made of.
public struct TransitionRecord<Spec: ChartSpec>: Sendable {
    /// When it happened, on the scheduler's clock.
    public let time: Nanoseconds
    public let machine: MachineID
    /// The machine's name (the peer), as given when it was added.
    public let name: String
    public let transition: Transition<Spec>
    /// Time spent in the state the transition left (for an internal one: in the current state so far).
    public let elapsed: Nanoseconds

    @usableFromInline
    init(time: Nanoseconds, machine: MachineID, name: String, transition: Transition<Spec>, elapsed: Nanoseconds) {
        self.time = time
        self.machine = machine
        self.name = name
        self.transition = transition
        self.elapsed = elapsed
    }

    /// The record as one trace line, `peer=… from=… event=… to=… elapsed_ms=… actions=…`.
    public var line: String {
        "peer=\(name) from=\(transition.from) event=\(transition.event) to=\(transition.to) elapsed_ms=\(TransitionRecord.milliseconds(elapsed)) actions=\(actionList)"
    }

    /// The actions, comma-separated.
    public var actionList: String { transition.actions.map { "\($0)" }.joined(separator: ",") }

    /// `1234.567`: milliseconds with microsecond precision.
    static func milliseconds(_ nanoseconds: Nanoseconds) -> String {
        let micros = nanoseconds / 1000
        let fraction = String(micros % 1000)
        return "\(micros / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
}
