/// How many datagrams a reader handles each time its socket is ready, before it returns to its
/// loop. The event loop's `epoll` is level-triggered: what is left waits for the next round, after
/// the timers that are due and the other ready descriptors, so a flood on one socket cannot hold
/// back heartbeats, expiry or other sockets.
public enum ReadBatch {
    /// Datagrams per readiness callback.
    public static let datagrams = 64
}
