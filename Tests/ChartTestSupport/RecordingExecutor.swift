import EventLoop
import StateChart

/// An executor that only records what it was asked to do, for tests of charts and schedulers.
public final class RecordingExecutor<Spec: ChartSpec>: ActionExecutor {
    public private(set) var executed: [(id: MachineID, action: Spec.Action)] = []

    public init() {}

    public func execute(_ action: Spec.Action, for id: MachineID) {
        executed.append((id, action))
    }

    /// Forgets what was recorded so far.
    public func reset() { executed.removeAll(keepingCapacity: true) }
}
