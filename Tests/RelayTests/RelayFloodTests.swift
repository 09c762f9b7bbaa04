import EventLoop
import Foundation
import LabSupport
import Net
@testable import Relay
import Rendezvous
import Testing

/// A flood through one allocation (datagrams from the allowed address, each forwarded to the other
/// side, faster than the relay can forward them): its socket never empties, and the relay's
/// expiry still runs on time for another, idle, allocation.
@Suite(.serialized) struct RelayFloodTests {
    typealias Harness = RelayLoopbackTests.Harness

    @Test func aFloodedAllocationDoesNotStopTheExpiryOfOthers() throws {
        let h = try Harness(idle: .seconds(1))
        let localhost = RelayLoopbackTests.localhost
        let sockets = try (0..<4).map { _ in try UDPSocket(binding: Endpoint(localhost, 0)) }
        let busyA = try #require(RelayLoopbackTests.port(try h.allocate(RelayLoopbackTests.token(side: 0, pair: 1), from: sockets[0])))
        let busyB = try #require(RelayLoopbackTests.port(try h.allocate(RelayLoopbackTests.token(side: 1, pair: 1), from: sockets[1])))
        _ = try #require(RelayLoopbackTests.port(try h.allocate(RelayLoopbackTests.token(side: 0, pair: 2), from: sockets[2])))
        _ = try #require(RelayLoopbackTests.port(try h.allocate(RelayLoopbackTests.token(side: 1, pair: 2), from: sockets[3])))
        let idleSince = h.clock.now
        #expect(h.relay.allocationCount == 2)
        // Side B of the busy pair speaks first, so that what A sends is forwarded to it.
        try sockets[1].send([UInt8](repeating: 9, count: 40), to: Endpoint(localhost, busyB))
        #expect(try h.spin { h.relay.allocations.values.contains { $0.sides[1].latched == sockets[1].local } })

        // A deep backlog, as on a relay under load: the flood outlasts any pause of its senders.
        let busy = try #require(h.relay.allocations.values.first { $0.sides[0].port == busyA })
        busy.sockets[0].enlargeBuffers(to: 4 << 20)
        let flood = LoopbackFlood(to: Endpoint(localhost, busyA), from: localhost, payload: [UInt8](repeating: 4, count: 100),
                                  threads: 4, seconds: 2)
        usleep(100_000) // a backlog first
        var beats: [Nanoseconds] = []
        h.loop.addTimers(Ticker(every: .milliseconds(50), clock: h.clock) { beats.append(h.clock.now) })
        let started = h.clock.now
        let expired = try h.spin(upTo: 1.8) { h.relay.counters.expiredAllocations == 1 }
        let expiredAfter = Double(h.clock.now - idleSince) / 1e9
        let gaps = zip(beats.dropFirst(), beats).map { Double($0 - $1) / 1e9 }
        let forwarded = h.relay.allocations.values.first?.sides[0].packets ?? 0
        let sent = flood.wait()

        #expect(forwarded > 1000, "the flood went through the busy allocation: \(forwarded) of \(sent) forwarded")
        #expect(expired && expiredAfter < 1.8, "the idle allocation expired \(expiredAfter) s after its last datagram (timeout 1 s)")
        #expect(h.relay.allocationCount == 1, "the busy allocation stays")
        #expect(!beats.isEmpty && Double(beats[0] - started) / 1e9 < 0.5, "the first beat came late or never")
        #expect((gaps.max() ?? 0) < 0.5, "a 50 ms timer went unfired for \(gaps.max() ?? 0) s during the flood")
    }
}
