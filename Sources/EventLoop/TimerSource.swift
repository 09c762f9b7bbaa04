import Time

/// Something with timers that an ``EventLoop`` wakes up for: a ``Scheduler``.
public protocol TimerSource: AnyObject {
    /// When the earliest timer is due, or `nil` when none is armed.
    var nextDeadline: Nanoseconds? { get }
    /// Fires the timers that are due; returns how many fired.
    @discardableResult func fireDueTimers() -> Int
}
