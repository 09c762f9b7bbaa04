import CLinux
import Output
import EventLoop
import Net
import StateChart
import Time

/// The agent's local status socket: a unix stream socket (0660) where each connection sends one
/// request line and reads one answer. Requests: `status`, `status json`, `peer QUERY`.
///
/// It shares the agent's one thread, so it never waits on a client: each connection is read as its
/// bytes arrive and answered as its socket takes the answer (the rest when it becomes writable).
/// A connection has ``deadline`` from its acceptance to send its request and take the answer, and
/// is closed then whatever it got to; a request line has at most ``requestLimit`` bytes. At most
/// ``connectionLimit`` connections are open at once: one more is told it is busy and closed.
final class StatusServer: TimerSource {
    static let deadline: Duration = .seconds(1)
    static let requestLimit = 8192
    static let connectionLimit = 8

    private let listener: UnixListener
    private unowned(unsafe) let loop: EventLoop
    private let clock: any TimeSource
    private let answer: (String) -> String
    private var connections: [Int32: StatusConnection] = [:]
    private var buffer = [UInt8](repeating: 0, count: 4096)
    private var closed = false

    /// Listens on `path`, mode 0660: root's, and `group`'s when given (members of the `lanrage`
    /// group use `lanrage status` without root).
    init(path: String, group: gid_t?, loop: EventLoop, clock: any TimeSource, answer: @escaping (String) -> String) throws(AgentFailure) {
        // The socket's directory and its parents (/var/run/lanrage: /run/lanrage under systemd), 0755.
        var directory = ""
        for component in path.split(separator: "/").dropLast() {
            directory += "/" + component
            if mkdir(directory, 0o755) != 0 && lanrage_errno() != EEXIST { throw AgentFailure(SystemError("mkdir", directory)) }
        }
        let opened = Result { () throws(SystemError) -> UnixListener in try UnixListener(path: path, mode: 0o660) }
        switch opened {
        case .success(let listener):
            self.listener = listener
            if let group, chown(path, uid_t.max, group) != 0 { throw AgentFailure(SystemError("chown", "\(path) to group \(group)")) }
        case .failure(let error) where error.errno == EADDRINUSE:
            throw AgentFailure("another agent is running: its status socket \(path) answers (stop it, or set another StatusSocket)")
        case .failure(let error): throw AgentFailure(error)
        }
        self.loop = loop
        self.clock = clock
        self.answer = answer
        let listener = listener
        try starting { () throws(SystemError) in try loop.register(listener.descriptor) { [unowned(unsafe) self] in self.acceptWaiting() } }
        loop.addTimers(self)
    }

    /// Accepts what is waiting, a bounded number per round.
    private func acceptWaiting() {
        for _ in 0..<Self.connectionLimit {
            guard let stream = listener.accept() else { return }
            let descriptor = stream.descriptor
            guard connections.count < Self.connectionLimit else {
                _ = try? stream.send(ArraySlice("error=the agent is busy with other status requests, try again\n".utf8))
                continue
            }
            do {
                try loop.register(descriptor) { [unowned(unsafe) self] in self.readable(descriptor) }
            } catch {
                continue
            }
            connections[descriptor] = StatusConnection(stream, deadline: clock.now + Self.deadline.nanoseconds)
        }
    }

    private func readable(_ descriptor: Int32) {
        guard let connection = connections[descriptor] else { return }
        switch connection.read(using: &buffer, limit: Self.requestLimit) {
        case .request(let line):
            switch connection.answer(with: Array(answer(line).utf8)) {
            case .waiting:
                // The rest when the socket has room: writability only, the request is complete.
                loop.unregister(descriptor)
                do {
                    try loop.register(descriptor, for: .writable) { [unowned(unsafe) self] in self.writable(descriptor) }
                } catch {
                    drop(descriptor)
                }
            case .answered:
                finish(descriptor)
            case .request, .gone:
                drop(descriptor)
            }
        case .waiting:
            break
        case .answered, .gone:
            drop(descriptor)
        }
    }

    private func writable(_ descriptor: Int32) {
        guard let connection = connections[descriptor] else { return }
        switch connection.write() {
        case .waiting: break
        case .answered: finish(descriptor)
        case .request, .gone: drop(descriptor)
        }
    }

    /// Closes an answered connection, after dropping what the client sent beyond its request.
    private func finish(_ descriptor: Int32) {
        connections[descriptor]?.discardInput(using: &buffer, limit: Self.requestLimit)
        drop(descriptor)
    }

    /// Stops watching the connection and closes it.
    private func drop(_ descriptor: Int32) {
        loop.unregister(descriptor)
        connections[descriptor] = nil
    }

    var nextDeadline: Nanoseconds? {
        var earliest: Nanoseconds?
        for connection in connections.values { earliest = min(earliest ?? connection.deadline, connection.deadline) }
        return earliest
    }

    /// Closes the connections whose deadline has passed.
    @discardableResult
    func fireDueTimers() -> Int {
        guard !connections.isEmpty else { return 0 }
        let now = clock.now
        let due = connections.filter { $0.value.deadline <= now }.map { $0.key }
        for descriptor in due { drop(descriptor) }
        return due.count
    }

    /// Closes the connections and the socket (and removes its file).
    func close() {
        guard !closed else { return }
        closed = true
        for descriptor in Array(connections.keys) { drop(descriptor) }
        loop.unregister(listener.descriptor)
        listener.close()
    }
}
