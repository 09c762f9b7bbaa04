/// One armed timer in the scheduler's heap: a chart timeout of a machine's state, or an event
/// posted for later. Ordered by deadline, then by arming order, so runs are deterministic.
struct TimerEntry: Comparable {
    var deadline: Nanoseconds
    var sequence: UInt64
    var machine: Int32
    /// The machine's epoch when a state timeout was armed; 0 for a posted event, which fires
    /// whatever state the machine is in.
    var epoch: UInt32
    /// Index of the chart timeout, or -1 for a posted event.
    var timeout: Int32
    /// Repeats left for a state timeout (`Int32.max`: forever), or the event's raw value.
    var payload: Int32

    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline != rhs.deadline ? lhs.deadline < rhs.deadline : lhs.sequence < rhs.sequence
    }

    static func == (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline == rhs.deadline && lhs.sequence == rhs.sequence
    }
}
