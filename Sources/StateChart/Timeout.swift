import Time

/// A timer a state arms on entry: after `delay` in `state`, the machine receives `event`
/// (`repeats` times, `delay` apart). Leaving the state cancels it.
public struct Timeout<Spec: ChartSpec>: Sendable {
    public let state: Spec.State
    public let delay: Delay<Spec.Context>
    public let event: Spec.Event
    /// How many times the timer fires, `delay` apart; 1 for a one-shot timeout, `Int.max` for
    /// as long as the state lasts.
    public let repeats: Int

    public init(_ state: Spec.State, after delay: Delay<Spec.Context>, fire event: Spec.Event) {
        self.init(state, delay: delay, event: event, repeats: 1)
    }

    public init(_ state: Spec.State, every delay: Delay<Spec.Context>, times repeats: Int, fire event: Spec.Event) {
        self.init(state, delay: delay, event: event, repeats: repeats)
    }

    /// A timer that fires every `delay` for as long as the machine stays in `state`.
    public init(_ state: Spec.State, every delay: Delay<Spec.Context>, fire event: Spec.Event) {
        self.init(state, delay: delay, event: event, repeats: .max)
    }

    init(_ state: Spec.State, delay: Delay<Spec.Context>, event: Spec.Event, repeats: Int) {
        self.state = state
        self.delay = delay
        self.event = event
        self.repeats = repeats
    }

    /// How the timeout reads on the chart picture: "after 2s", "every 100ms ×4".
    public var label: String { ChartOutline.Timeout.label(delay: delay.label, repeats: repeats) }
}

/// How long a timer waits: a fixed duration, or one computed from the context (a backoff).
public struct Delay<Context>: Sendable {
    /// How the delay reads on the chart picture ("2s", "30s·2ⁿ ≤ 10m").
    public let label: String
    @usableFromInline let fixedNanoseconds: Int64?
    @usableFromInline let compute: (@Sendable (Context) -> Duration)?

    /// A fixed delay.
    public static func fixed(_ duration: Duration) -> Delay {
        Delay(label: Delay.format(duration), fixedNanoseconds: duration.nanoseconds, compute: nil)
    }

    /// A delay computed from the context each time the state is entered.
    public static func computed(_ label: String, _ compute: @escaping @Sendable (Context) -> Duration) -> Delay {
        Delay(label: label, fixedNanoseconds: nil, compute: compute)
    }

    /// The delay in nanoseconds for a machine in `context`.
    @inlinable
    public func nanoseconds(in context: Context) -> Int64 {
        if let fixedNanoseconds { return fixedNanoseconds }
        return max(0, compute!(context).nanoseconds)
    }

    /// `2s`, `100ms`, `2.4s`, `3m`, `1h`: short, exact, and free of Foundation formatting.
    public static func format(_ duration: Duration) -> String {
        let nanoseconds = duration.nanoseconds
        func decimal(_ value: Int64, _ unit: Int64, _ suffix: String) -> String? {
            guard nanoseconds % (unit / 1000) == 0 else { return nil }
            let whole = value / unit, fraction = value % unit
            guard fraction != 0 else { return "\(whole)\(suffix)" }
            var digits = String(fraction * 1000 / unit)
            digits = String(repeating: "0", count: 3 - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            return "\(whole).\(digits)\(suffix)"
        }
        let hour: Int64 = 3_600_000_000_000, minute: Int64 = 60_000_000_000, second: Int64 = 1_000_000_000
        if nanoseconds >= hour, nanoseconds % hour == 0 { return "\(nanoseconds / hour)h" }
        if nanoseconds >= minute, nanoseconds % minute == 0 { return "\(nanoseconds / minute)m" }
        if nanoseconds >= second, let text = decimal(nanoseconds, second, "s") { return text }
        if nanoseconds >= 1_000_000, let text = decimal(nanoseconds, 1_000_000, "ms") { return text }
        if nanoseconds >= 1000, nanoseconds % 1000 == 0 { return "\(nanoseconds / 1000)µs" }
        return "\(nanoseconds)ns"
    }
}
