import EventLoop
import Foundation
import LabSupport
import Net
@testable import Relay
import Rendezvous
import Testing
import Time

/// A flood through one allocation (datagrams from a side's latched endpoint, each forwarded to the
/// other side, faster than the relay can forward them): its socket never empties, and the relay's
/// expiry still runs on time for another, idle, allocation.
@Suite(.serialized) struct RelayFloodTests {
    typealias Harness = RelayLoopbackTests.Harness

    @Test func aFloodedAllocationDoesNotStopTheExpiryOfOthers() throws {
        let h = try Harness(idle: .seconds(1))
        let localhost = RelayLoopbackTests.localhost
        let sockets = try (0..<4).map { _ in try UDPSocket(binding: Endpoint(localhost, 0)) }
        let tokenA = RelayLoopbackTests.token(side: 0, pair: 1), tokenB = RelayLoopbackTests.token(side: 1, pair: 1)
        let busyA = try #require(RelayLoopbackTests.port(try h.allocate(tokenA, from: sockets[0])))
        let busyB = try #require(RelayLoopbackTests.port(try h.allocate(tokenB, from: sockets[1])))
        _ = try #require(RelayLoopbackTests.port(try h.allocate(RelayLoopbackTests.token(side: 0, pair: 2), from: sockets[2])))
        _ = try #require(RelayLoopbackTests.port(try h.allocate(RelayLoopbackTests.token(side: 1, pair: 2), from: sockets[3])))
        let idleSince = h.clock.now
        #expect(h.relay.allocationCount == 2)
        // Both sides of the busy pair latch; the flood comes from A's latched endpoint and is forwarded to B.
        try h.latch(sockets[1], port: busyB, token: tokenB, counter: 1)
        try h.latch(sockets[0], port: busyA, token: tokenA, counter: 1)
        #expect(try h.spin { h.relay.allocations.values.contains { $0.sides[0].latched == sockets[0].local && $0.sides[1].latched == sockets[1].local } })

        // A deep backlog, as on a relay under load: the flood outlasts any pause of its senders.
        let busy = try #require(h.relay.allocations.values.first { $0.sides[0].port == busyA })
        h.relay.sockets[busy.sides[0].port]?.enlargeBuffers(to: 4 << 20)
        let flood = LoopbackFlood(to: Endpoint(localhost, busyA), from: [sockets[0]], payload: [UInt8](repeating: 4, count: 100), seconds: 2)
        usleep(100_000) // a backlog first
        var beats: [Nanoseconds] = []
        h.loop.addTimers(Ticker(every: .milliseconds(50), clock: h.clock) { beats.append(h.clock.now) })
        let started = h.clock.now
        let expired = try h.spin(upTo: 1.8) { h.relay.counters.expiredAllocations == 1 }
        let expiredAfter = Double(h.clock.now - idleSince) / 1e9
        let gaps = zip(beats.dropFirst(), beats).map { Double($0 - $1) / 1e9 }
        let read = h.relay.allocations.values.first?.sides[0].packets ?? 0
        let sent = flood.wait()

        #expect(read > 1000, "the flood went through the busy allocation: \(read) of \(sent) forwarded")
        #expect(expired && expiredAfter < 1.8, "the idle allocation expired \(expiredAfter) s after its last datagram (timeout 1 s)")
        #expect(h.relay.allocationCount == 1, "the busy allocation stays")
        #expect(!beats.isEmpty && Double(beats[0] - started) / 1e9 < 0.5, "the first beat came late or never")
        #expect((gaps.max() ?? 0) < 0.5, "a 50 ms timer went unfired for \(gaps.max() ?? 0) s during the flood")
    }
}
