import StateChart

/// Carries out the actions of a scheduler's machines against the world (sockets, netlink) —
/// or records them, in tests. Results come back as events posted to the scheduler.
public protocol ActionExecutor<Spec>: AnyObject {
    associatedtype Spec: ChartSpec
    /// Executes `action` for the machine `id`. Called on the scheduler's thread, in action order.
    func execute(_ action: Spec.Action, for id: MachineID)
}

/// Identifies a machine within its scheduler: its slot, and which of the machines that held the
/// slot (a removed machine's slot is reused; its ID then names no machine).
public struct MachineID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let index: Int32
    public let generation: UInt32

    public init(_ index: Int32, generation: UInt32 = 0) {
        self.index = index
        self.generation = generation
    }

    public static func < (lhs: MachineID, rhs: MachineID) -> Bool {
        lhs.index != rhs.index ? lhs.index < rhs.index : lhs.generation < rhs.generation
    }

    public var description: String { generation == 0 ? "#\(index)" : "#\(index).\(generation)" }
}
