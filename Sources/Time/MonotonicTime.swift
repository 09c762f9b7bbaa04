import CLinux

/// The kernel's `CLOCK_MONOTONIC` (never jumps, unaffected by changes of the wall clock), from an
/// arbitrary origin (boot).
public enum MonotonicTime {
    /// Now, as a `Duration` since the origin.
    public static func now() -> Duration {
        .nanoseconds(nanoseconds())
    }

    /// Now, in nanoseconds since the origin.
    public static func nanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
