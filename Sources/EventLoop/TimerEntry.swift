import Time

/// One armed timer in the scheduler's heap: a chart timeout of a machine's state, or an event
/// posted for later. Ordered by deadline, then by arming order, so runs are deterministic.
@usableFromInline
struct TimerEntry: Comparable {
    @usableFromInline var deadline: Nanoseconds
    @usableFromInline var sequence: UInt64
    @usableFromInline var machine: Int32
    /// The generation of the machine's slot: a timer of a removed machine never fires into the next.
    @usableFromInline var generation: UInt32
    /// The machine's epoch when a state timeout was armed; 0 for a posted event, which fires
    /// whatever state the machine is in.
    @usableFromInline var epoch: UInt32
    /// Index of the chart timeout, or -1 for a posted event.
    @usableFromInline var timeout: Int32
    /// Repeats left for a state timeout (`Int32.max`: forever), or the event's raw value.
    @usableFromInline var payload: Int32

    @inlinable
    init(deadline: Nanoseconds, sequence: UInt64, machine: MachineID, epoch: UInt32, timeout: Int32, payload: Int32) {
        self.deadline = deadline
        self.sequence = sequence
        self.machine = machine.index
        self.generation = machine.generation
        self.epoch = epoch
        self.timeout = timeout
        self.payload = payload
    }

    @inlinable
    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline != rhs.deadline ? lhs.deadline < rhs.deadline : lhs.sequence < rhs.sequence
    }

    @inlinable
    static func == (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline == rhs.deadline && lhs.sequence == rhs.sequence
    }
}
