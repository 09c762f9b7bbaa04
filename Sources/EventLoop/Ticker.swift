import StateChart
import Time

/// A timer source that calls `tick` every `interval` (on the loop's thread), for servers'
/// housekeeping: expiring idle entries, periodic reports.
public final class Ticker: TimerSource {
    public let interval: Nanoseconds
    private let clock: any TimeSource
    private let tick: () -> Void
    public private(set) var nextDeadline: Nanoseconds?

    public init(every interval: Duration, clock: any TimeSource, _ tick: @escaping () -> Void) {
        self.interval = interval.nanoseconds
        self.clock = clock
        self.tick = tick
        nextDeadline = clock.now + self.interval
    }

    @discardableResult
    public func fireDueTimers() -> Int {
        let now = clock.now
        guard let deadline = nextDeadline, deadline <= now else { return 0 }
        nextDeadline = max(deadline + interval, now + interval / 2)
        tick()
        return 1
    }
}
