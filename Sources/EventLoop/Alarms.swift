import StateChart
import Time

/// One-shot callbacks at given times, on the loop's thread: for the few delays that are not a
/// machine's timeout (a WireGuard keepalive sent a moment after the peer's).
public final class Alarms: TimerSource {
    private let clock: any TimeSource
    private var pending: [(deadline: Nanoseconds, body: () -> Void)] = []

    public init(clock: any TimeSource) {
        self.clock = clock
    }

    /// Calls `body` once, `delay` from now.
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) {
        pending.append((clock.now + delay.nanoseconds, body))
    }

    public var nextDeadline: Nanoseconds? { pending.map { $0.deadline }.min() }

    @discardableResult
    public func fireDueTimers() -> Int {
        let now = clock.now
        let due = pending.filter { $0.deadline <= now }
        pending.removeAll { $0.deadline <= now }
        for alarm in due { alarm.body() }
        return due.count
    }
}
