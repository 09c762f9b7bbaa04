import EventLoop
import Net
import Time

/// One client of the status socket: its request line as the bytes arrive, then the answer as
/// the socket takes it. Never waits: the status server calls it when the socket is ready.
final class StatusConnection {
    /// What a read or a write got to.
    enum Progress: Equatable {
        /// Waiting for more of the request, or for room to write the rest of the answer.
        case waiting
        /// The request line is complete (a newline, the end of the client's stream, or the size limit).
        case request(String)
        /// The answer is written.
        case answered
        /// The client went away, or its socket failed: close it.
        case gone
    }

    let stream: UnixConnection
    /// When the connection is closed whatever it got to.
    let deadline: Nanoseconds
    private var request: [UInt8] = []
    private var answer: [UInt8] = []
    private var written = 0

    init(_ stream: UnixConnection, deadline: Nanoseconds) {
        self.stream = stream
        self.deadline = deadline
    }

    /// Reads what has arrived, using `buffer`, up to `limit` request bytes in all.
    func read(using buffer: inout [UInt8], limit: Int) -> Progress {
        while request.count < limit {
            let count: Int?
            do { count = try stream.receive(into: &buffer, limit: limit - request.count) } catch { return .gone }
            guard let count else { return .waiting }
            if count == 0 { return request.isEmpty ? .gone : line() }
            let received = buffer[..<count]
            request += received
            if received.contains(10) || received.contains(13) { return line() }
        }
        return line()
    }

    private func line() -> Progress {
        .request(String(decoding: request.prefix { $0 != 10 && $0 != 13 }, as: UTF8.self))
    }

    /// Reads and drops what the client sent beyond its request, at most `limit` bytes: closing a
    /// unix socket with unread bytes resets the connection, and the client would lose its answer.
    func discardInput(using buffer: inout [UInt8], limit: Int) {
        var discarded = 0
        while discarded < limit, let count = try? stream.receive(into: &buffer, limit: limit - discarded), count > 0 {
            discarded += count
        }
    }

    /// Starts writing `bytes`, as much as the socket takes now.
    func answer(with bytes: [UInt8]) -> Progress {
        answer = bytes
        written = 0
        request = []
        return write()
    }

    /// Writes more of the answer, as much as the socket takes now.
    func write() -> Progress {
        while written < answer.count {
            let sent: Int
            do { sent = try stream.send(answer[written...]) } catch { return .gone }
            if sent == 0 { return .waiting }
            written += sent
        }
        return .answered
    }
}
