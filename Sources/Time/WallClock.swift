import CLinux

/// Real (calendar) time: log timestamps, message timestamps, WireGuard handshake ages, and start
/// times agreed with the control server. Scheduling uses the monotonic clock.
public enum WallClock {
    /// Milliseconds since 1970-01-01 UTC.
    public static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// Milliseconds since 1970-01-01 UTC, as message timestamps and tokens carry them (0 before 1970).
    public static func unixMillis() -> UInt64 { UInt64(clamping: milliseconds()) }

    /// Seconds since 1970-01-01 UTC, as certificates and relay tokens carry them (0 before 1970).
    public static func unixSeconds() -> UInt64 { unixMillis() / 1000 }

    /// The current UTC time as RFC 3339 text with milliseconds: `2026-11-25T18:06:34.123Z`.
    public static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
