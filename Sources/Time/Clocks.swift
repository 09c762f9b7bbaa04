/// A point on a monotonic time line, in nanoseconds from an arbitrary origin.
public typealias Nanoseconds = Int64

/// The one clock of the agent and the servers: monotonic time for every timer and timeout, wall
/// time for what crosses the network or outlives the process (message timestamps, certificate and
/// token lifetimes, WireGuard's handshake times). Passed to everything that reads the time, so
/// that tests and the simulation run the real code in virtual time.
///
/// Every member is a requirement, none a protocol extension: a call on `any TimeSource` must go
/// through the conformance's witness table, which Embedded Swift cannot do for an extension member
/// (it would open the existential into an unspecialized generic; on armv7 such a call reached a
/// dead-method stub).
public protocol TimeSource: AnyObject {
    /// Monotonic now.
    var now: Nanoseconds { get }
    /// Milliseconds since 1970-01-01 UTC.
    var wallMilliseconds: Int64 { get }
    /// Milliseconds since 1970-01-01 UTC, as message timestamps carry them (0 before 1970).
    var unixMillis: UInt64 { get }
    /// Seconds since 1970-01-01 UTC, as certificates and relay tokens carry them (0 before 1970).
    var unixSeconds: UInt64 { get }
}

/// The system's clocks: `CLOCK_MONOTONIC` (never jumps, unaffected by changes of the wall clock)
/// and `CLOCK_REALTIME`.
public final class SystemClock: TimeSource {
    public init() {}

    public var now: Nanoseconds { MonotonicTime.nanoseconds() }
    public var wallMilliseconds: Int64 { WallClock.milliseconds() }
    public var unixMillis: UInt64 { UInt64(clamping: wallMilliseconds) }
    public var unixSeconds: UInt64 { unixMillis / 1000 }
}

/// A clock that only moves when told to: tests and the simulation run hours of timers in
/// microseconds, deterministically. Its wall time is `wallOrigin` plus the monotonic time, so a
/// skewed clock is a different origin.
public final class VirtualClock: TimeSource {
    public var now: Nanoseconds
    /// The wall time, in milliseconds since 1970, at monotonic zero.
    public var wallOrigin: Int64

    /// Starts at `now`; the default origin is 2027-01-01T00:00:00Z.
    public init(now: Nanoseconds = 0, wallOrigin: Int64 = 1_798_761_600_000) {
        self.now = now
        self.wallOrigin = wallOrigin
    }

    public var wallMilliseconds: Int64 { wallOrigin + now / 1_000_000 }
    public var unixMillis: UInt64 { UInt64(clamping: wallMilliseconds) }
    public var unixSeconds: UInt64 { unixMillis / 1000 }

    /// Moves the clock forward by `duration`.
    public func advance(by duration: Duration) {
        now += duration.nanoseconds
    }
}
