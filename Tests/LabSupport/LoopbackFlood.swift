import Foundation
import Net

/// UDP datagrams sent as fast as threads of their own can send them, from `source` (a loopback
/// address) to `target`, for tests that a server keeps its timers while its socket never empties.
/// Bounded: each thread stops after `seconds` or `limit` datagrams, whichever comes first.
public final class LoopbackFlood: @unchecked Sendable {
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var total = 0

    public convenience init(to target: Endpoint, from source: IPAddress, payload: [UInt8], threads: Int = 2, seconds: Double = 3,
                            limit: Int = 20_000_000) {
        self.init(to: target, from: (0..<threads).map { _ in try? UDPSocket(binding: Endpoint(source, 0)) }, payload: payload,
                  seconds: seconds, limit: limit)
    }

    /// A flood from sockets of the caller's (one thread each): from an endpoint that is known to the target.
    public init(to target: Endpoint, from sockets: [UDPSocket?], payload: [UInt8], seconds: Double = 3, limit: Int = 20_000_000) {
        let deadline = Date().addingTimeInterval(seconds)
        for socket in sockets {
            nonisolated(unsafe) let socket = socket
            group.enter()
            Thread.detachNewThread { [self] in
                var sent = 0
                if let socket {
                    while sent < limit {
                        if sent % 256 == 0 && Date() >= deadline { break }
                        _ = try? socket.send(payload, to: target)
                        sent += 1
                    }
                }
                lock.withLock { total += sent }
                group.leave()
            }
        }
    }

    /// Waits until every thread has stopped; the datagrams sent.
    @discardableResult
    public func wait() -> Int {
        group.wait()
        return lock.withLock { total }
    }
}
