import Net
import StateChart

/// A point on a monotonic time line, in nanoseconds from an arbitrary origin.
public typealias Nanoseconds = Int64

/// The time source of a scheduler: the real monotonic clock, or a virtual one for tests.
public protocol SchedulerClock: AnyObject {
    /// The current time.
    var now: Nanoseconds { get }
}

/// The kernel's `CLOCK_MONOTONIC`: never jumps, unaffected by changes of the wall clock.
public final class MonotonicClock: SchedulerClock {
    public init() {}

    public var now: Nanoseconds { MonotonicTime.nanoseconds() }
}

/// A clock that only moves when told to: tests run hours of timers in microseconds, deterministically.
public final class VirtualClock: SchedulerClock {
    public var now: Nanoseconds

    public init(now: Nanoseconds = 0) { self.now = now }

    /// Moves the clock forward by `duration`.
    public func advance(by duration: Duration) {
        now += duration.nanoseconds
    }
}
