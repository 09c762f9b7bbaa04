#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Net
import StateChart
import Testing
@testable import EventLoop
import Time

/// The real loop: epoll, the monotonic clock, a socket pair and signals, on one thread.
@Suite struct EventLoopTests {
    /// Writes a byte to a socket on every flash, stops the loop on finish.
    final class SocketWriter: ActionExecutor {
        typealias Spec = Blinker
        let socket: Int32
        var log: [String] = []
        var stop: () -> Void = {}
        init(socket: Int32) { self.socket = socket }
        func execute(_ action: Blinker.Action, for id: MachineID) {
            log.append("\(action)")
            switch action {
            case .flash: var byte: UInt8 = 1; _ = write(socket, &byte, 1)
            case .finish: stop()
            case .poked: break
            }
        }
    }

    /// `afterRound` runs once at the end of every round, after the round's callbacks and timers:
    /// what they queued is carried out before the loop waits again.
    @Test func afterRoundFollowsEachRoundsCallbacks() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        var log: [String] = []
        try loop.register(pair[1]) {
            var buffer = [UInt8](repeating: 0, count: 16)
            while read(pair[1], &buffer, 16) > 0 { log.append("read") }
        }
        var ticks = 0
        loop.addTimers(Ticker(every: .milliseconds(20), clock: clock) {
            ticks += 1
            log.append("tick")
            if ticks == 2 { var byte: UInt8 = 1; _ = write(pair[0], &byte, 1) }
            if ticks == 4 { loop.stop() }
        })
        loop.afterRound = { log.append("after") }
        try loop.run(until: clock.now + 2_000_000_000)
        #expect(ticks == 4)
        #expect(log.last == "after", "the last round's callbacks are followed by afterRound: \(log)")
        let tickIndices = log.indices.filter { log[$0] == "tick" }
        #expect(zip(tickIndices, tickIndices.dropFirst()).allSatisfy { log[$0..<$1].contains("after") },
                "ticks 20 ms apart fire in rounds of their own, each followed by afterRound: \(log)")
        let readIndex = try #require(log.firstIndex(of: "read"))
        #expect(log[readIndex...].contains("after"))
    }

    @Test func aReadableSocketAndTimersInterleaveInOrder() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        let writer = SocketWriter(socket: pair[0])
        let scheduler = Scheduler(chart: Blinker.chart(interval: .milliseconds(100), ticks: 2, giveUp: .milliseconds(300)),
                                  clock: clock, executor: writer, coalescingWindow: .zero)
        writer.stop = { loop.stop() }
        loop.addTimers(scheduler)
        var readTimes: [Nanoseconds] = []
        try loop.register(pair[1]) {
            var buffer = [UInt8](repeating: 0, count: 16)
            while read(pair[1], &buffer, 16) > 0 { writer.log.append("read") }
            readTimes.append(clock.now)
        }
        let start = clock.now
        scheduler.add(name: "light", context: .init(wait: .milliseconds(50)))
        try loop.run(until: start + 5_000_000_000)

        #expect(writer.log == ["flash", "read", "flash", "read", "finish"])
        #expect(scheduler.machine(MachineID(0))?.state == .done)
        // Reads happened after their flashes (150 ms, 250 ms) and the loop ended at giveUp (350 ms).
        #expect(readTimes.count == 2)
        #expect(readTimes[0] - start >= 150_000_000 && readTimes[1] - start >= 250_000_000)
        #expect(clock.now - start >= 350_000_000 && clock.now - start < 5_000_000_000)
    }

    @Test func signalsArriveThroughSignalfdOnTheLoopThread() throws {
        let loop = try EventLoop()
        var received: [Int32] = []
        try loop.handleSignals { signal in
            received.append(signal)
            if signal == SIGTERM { loop.stop() }
        }
        raise(SIGHUP)   // thread-directed: pending on this thread, which blocks it
        raise(SIGTERM)
        try loop.run(until: SystemClock().now + 5_000_000_000)
        #expect(received == [SIGHUP, SIGTERM])
    }

    @Test func runReturnsAtItsDeadlineWithNothingToDo() throws {
        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        let start = clock.now
        try loop.run(until: start + 30_000_000)
        #expect(clock.now - start >= 30_000_000)
        #expect(clock.now - start < 2_000_000_000, "and returns soon after it")
        #expect(loop.wakeups <= 3, "an idle loop sleeps until its deadline instead of spinning")
    }

    @Test func registeringABadDescriptorNamesTheCall() throws {
        let loop = try EventLoop()
        #expect(throws: SystemError.self) { try loop.register(-1) {} }
    }
}
