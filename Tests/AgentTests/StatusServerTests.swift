import EventLoop
import Foundation
import Net
import Testing
@testable import Agent
import Time

/// The status socket on the agent's event loop: slow clients (one byte every 0.4 s, or one that
/// never reads its answer) and too many clients at once neither hold the loop nor its timers, and
/// are closed at the deadline; other clients are answered meanwhile.
@Suite(.serialized) struct StatusServerTests {
    /// What the client threads saw, under a lock.
    final class Observations: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [String: Double] = [:]
        subscript(key: String) -> Double? {
            get { lock.withLock { values[key] } }
            set { lock.withLock { values[key] = newValue } }
        }
    }

    /// A socket path in a directory of its own, removed by `defer`.
    static func socketPath() throws -> (path: String, directory: URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lrss-\(getpid())-\(UInt16.random(in: 0...UInt16.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return (directory.appendingPathComponent("agent.sock").path, directory)
    }

    /// Whether the server closed `stream` (it is readable, and what it holds ends in EOF).
    static func closedByServer(_ stream: UnixStream) -> Bool {
        guard let ready = try? Readiness.readable([stream.descriptor], timeout: .zero), !ready.isEmpty else { return false }
        return (try? stream.read()) != nil
    }

    static let bigAnswer = String(repeating: "x", count: 2 << 20) + "\n"

    static func answer(_ request: String) -> String {
        request == "status json" ? bigAnswer : "ok \(request)\n"
    }

    @Test func slowClientsDoNotHoldTheLoopAndAreClosedAtTheDeadline() throws {
        let (path, directory) = try Self.socketPath()
        defer { try? FileManager.default.removeItem(at: directory) }
        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        let server = try StatusServer(path: path, group: nil, loop: loop, clock: clock, answer: Self.answer)
        defer { server.close() }
        var beats: [Nanoseconds] = []
        loop.addTimers(Ticker(every: .milliseconds(50), clock: clock) { beats.append(clock.now) })
        let seen = Observations()
        let group = DispatchGroup()

        // One byte every 0.4 s, never a newline, for at most 3.2 s: closed at about 1 s.
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            guard let stream = try? UnixStream.connect(path) else { return }
            let start = Date()
            for _ in 0..<8 {
                _ = try? stream.write([0x73])
                Thread.sleep(forTimeInterval: 0.4)
                if Self.closedByServer(stream) { seen["slow closed"] = Date().timeIntervalSince(start); return }
            }
        }
        // Asks for the big answer and does not read it for 2 s: cut at the deadline.
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            guard let stream = try? UnixStream.connect(path) else { return }
            _ = try? stream.write(Array("status json\n".utf8))
            Thread.sleep(forTimeInterval: 2)
            if let received = try? stream.read(limit: 16 << 20) { seen["non-reader received"] = Double(received.count) }
        }
        // A plain client meanwhile: answered at once.
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            Thread.sleep(forTimeInterval: 0.5)
            let start = Date()
            guard let stream = try? UnixStream.connect(path), (try? stream.write(Array("peer x\n".utf8))) != nil,
                  let answer = try? stream.read() else { return }
            if answer == Array("ok peer x\n".utf8) { seen["plain answered"] = Date().timeIntervalSince(start) }
        }

        let started = clock.now
        try loop.run(until: started + 3_500_000_000)
        let gaps = zip(beats.dropFirst(), beats).map { Double($0 - $1) / 1e9 }
        group.wait()

        #expect((gaps.max() ?? 10) < 0.5, "a 50 ms timer went unfired for \(gaps.max() ?? 10) s")
        #expect(beats.count > 30, "\(beats.count) beats in 3.5 s")
        let slow = try #require(seen["slow closed"], "the slow client was never closed")
        #expect(slow > 0.8 && slow < 2, "the slow client was closed after \(slow) s (deadline 1 s)")
        let received = try #require(seen["non-reader received"], "the client that does not read got no end of stream")
        #expect(received < Double(Self.bigAnswer.utf8.count), "the answer was cut at the deadline: \(received) bytes")
        let plain = try #require(seen["plain answered"], "the plain client was not answered")
        #expect(plain < 1, "the plain client waited \(plain) s")
    }

    @Test func extraConnectionsAreToldAndClosedAndLongRequestsAreCut() throws {
        let (path, directory) = try Self.socketPath()
        defer { try? FileManager.default.removeItem(at: directory) }
        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        let server = try StatusServer(path: path, group: nil, loop: loop, clock: clock, answer: Self.answer)
        defer { server.close() }
        let limit = StatusServer.connectionLimit
        var streams: [UnixStream] = []
        for _ in 0..<(limit + 2) {
            streams.append(try UnixStream.connect(path))
            try loop.run(until: clock.now + 20_000_000)
        }
        try loop.run(until: clock.now + 200_000_000)
        for extra in streams[limit...] {
            #expect(String(decoding: try extra.read(), as: UTF8.self).hasPrefix("error="), "one too many is told so and closed")
        }
        #expect(streams[..<limit].allSatisfy { !Self.closedByServer($0) }, "the others wait for their request")
        try loop.run(until: clock.now + 1_200_000_000)
        #expect(streams[..<limit].allSatisfy { Self.closedByServer($0) }, "and are closed at the deadline")

        // Room again; a request line without end is cut at the limit and answered.
        let long = try UnixStream.connect(path)
        try long.write([UInt8](repeating: 0x79, count: StatusServer.requestLimit + 100))
        try loop.run(until: clock.now + 200_000_000)
        let answer = try long.read()
        #expect(answer.count == StatusServer.requestLimit + 4, "ok, a space, the first \(StatusServer.requestLimit) bytes, a newline: \(answer.count)")
    }
}
