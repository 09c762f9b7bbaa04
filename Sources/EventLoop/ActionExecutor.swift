import StateChart

/// Carries out the actions of a scheduler's machines against the world (sockets, netlink) —
/// or records them, in tests. Results come back as events posted to the scheduler.
public protocol ActionExecutor<Spec>: AnyObject {
    associatedtype Spec: ChartSpec
    /// Executes `action` for the machine `id`. Called on the scheduler's thread, in action order.
    func execute(_ action: Spec.Action, for id: MachineID)
}

/// Identifies a machine within its scheduler.
public struct MachineID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let index: Int32

    public init(_ index: Int32) { self.index = index }

    public static func < (lhs: MachineID, rhs: MachineID) -> Bool { lhs.index < rhs.index }
    public var description: String { "#\(index)" }
}
