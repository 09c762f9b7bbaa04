import EventLoop
import Net
import Relay
import Rendezvous
import Testing

/// The relay on loopback, in-process on its event loop: two "WireGuard" sockets allocate their
/// sides with tokens, and datagrams cross from one side's port to the other's, unframed.
@Suite(.serialized) struct RelayLoopbackTests {
    static let key = Keys.relayKey(secret: Array("relay secret".utf8))
    static let localhost = IPAddress.v4(IPv4Address(127, 0, 0, 1))
    /// Another loopback address: a source the tokens do not name.
    static let stranger = IPAddress.v4(IPv4Address(127, 0, 0, 2))

    final class Harness {
        let loop: EventLoop
        let clock = MonotonicClock()
        let relay: RelayServer
        init(idle: Duration = .seconds(120), maxPerParty: Int = 32, ports: Int = 20) throws {
            loop = try EventLoop()
            // Find a free range: ask the kernel for a port, use the range above it.
            let probed = try { try UDPSocket(binding: Endpoint(RelayLoopbackTests.localhost, 0)).local.port }()
            let low = probed < 60_000 ? probed : 41_000
            var configuration = RelayServer.Configuration(listen: RelayLoopbackTests.localhost, ports: low...(low + UInt16(ports)),
                                                          key: RelayLoopbackTests.key)
            configuration.idleTimeout = idle
            configuration.maxPerParty = maxPerParty
            relay = try RelayServer(configuration, loop: loop, clock: clock)
        }

        /// Runs the loop until `condition` holds or `seconds` pass; returns the condition.
        func spin(upTo seconds: Double = 2, until condition: () -> Bool) throws -> Bool {
            let deadline = clock.now + Int64(seconds * 1e9)
            while clock.now < deadline {
                if condition() { return true }
                try loop.run(until: min(deadline, clock.now + 5_000_000))
            }
            return condition()
        }

        /// Sends an allocation request and runs the loop until the answer arrives.
        func allocate(_ token: [UInt8], from socket: UDPSocket) throws -> RelayMessage? {
            try socket.send(RelayMessage.allocate(nonce: 99, token: token).encoded(), to: relay.service.local)
            var answer: RelayMessage?
            var buffer = [UInt8](repeating: 0, count: 256)
            _ = try spin(upTo: 0.5) {
                if let (count, _) = try? socket.receive(into: &buffer) {
                    // The answer is authenticated under the token's reply key.
                    let replyKey = Keys.relayReplyKey(relayKey: RelayLoopbackTests.key, token: token)
                    answer = try? buffer.withUnsafeBytes { try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count]), key: replyKey) }
                }
                return answer != nil
            }
            return answer
        }
    }

    static func token(side: UInt8, address: IPAddress = localhost, pair: UInt8 = 1, party: UInt64 = 1, key: [UInt8] = key,
                      expires: UInt64 = UnixTime.seconds() + 60) -> [UInt8] {
        RelayToken(side: side, address: address, expiresAt: expires, partyID: party, pairID: [UInt8](repeating: pair, count: 16)).encoded(key: key)
    }

    static func port(_ message: RelayMessage?) -> UInt16? {
        guard case .allocated(99, .granted, let port, _) = message else { return nil }
        return port
    }

    @Test func datagramsCrossUnframedBothWaysAndAreCounted() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let portA = try #require(Self.port(try h.allocate(Self.token(side: 0), from: a)))
        let portB = try #require(Self.port(try h.allocate(Self.token(side: 1), from: b)))
        #expect(portA != portB && h.relay.allocationCount == 1)
        let relayA = Endpoint(Self.localhost, portA), relayB = Endpoint(Self.localhost, portB)

        // B must speak first so the relay latches it (WireGuard's handshake does the same). Its
        // datagram (WireGuard-sized) is held for A, but A's first datagram is a message of its own:
        // not delivered.
        try b.send([UInt8](repeating: 9, count: 40), to: relayB)
        #expect(try h.spin { h.relay.allocations.values.first?.sides[1].latched == b.local })
        var buffer = [UInt8](repeating: 0, count: 2048)
        for index in 0..<50 {
            let payload = [UInt8](repeating: UInt8(index), count: 100 + index)
            try a.send(payload, to: relayA)
            var got: (Int, Endpoint)?
            #expect(try h.spin { got = try? b.receive(into: &buffer); return got != nil })
            #expect(got?.1 == relayB, "arrives from B's relay port")
            #expect(Array(buffer[..<(got?.0 ?? 0)]) == payload, "unframed")
        }
        try b.send([1, 2, 3], to: relayB)
        var back: (Int, Endpoint)?
        #expect(try h.spin { back = try? a.receive(into: &buffer); return back != nil })
        #expect(back?.1 == relayA && Array(buffer[..<3]) == [1, 2, 3])

        let allocation = try #require(h.relay.allocations.values.first)
        #expect(allocation.sides[0].packets == 50)
        #expect(allocation.sides[0].bytes == UInt64((0..<50).reduce(0) { $0 + 100 + $1 }))
        #expect(allocation.sides[1].packets == 1, "the first datagram of B had no destination yet")
        #expect(allocation.sides[1].drops == 1)
    }

    /// Only the latest small datagram is held for a side that has not spoken: a larger one is
    /// dropped, an earlier one replaced (both counted as drops); it is delivered when the side
    /// latches with a bare latch byte (the agent's), as the first test shows it is not when the side's
    /// first datagram is a message of its own.
    @Test func onlyTheLatestSmallDatagramIsHeldForASideThatHasNotSpoken() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let portA = try #require(Self.port(try h.allocate(Self.token(side: 0), from: a)))
        let portB = try #require(Self.port(try h.allocate(Self.token(side: 1), from: b)))
        let relayA = Endpoint(Self.localhost, portA), relayB = Endpoint(Self.localhost, portB)
        let initiation = [UInt8](repeating: 1, count: 148)
        try b.send([0], to: relayB)
        try b.send(initiation, to: relayB)
        try b.send([UInt8](repeating: 2, count: 400), to: relayB)
        #expect(try h.spin { h.relay.allocations.values.first?.sides[1].drops == 1 }, "the large one dropped (the latch byte is not held)")
        // A latch byte after the initiation (WireGuard was quicker than the agent) does not replace it.
        try b.send([0], to: relayB)
        try b.send(initiation, to: relayB)
        #expect(try h.spin { h.relay.allocations.values.first?.sides[1].drops == 2 }, "the first initiation replaced by the second")
        try a.send([7], to: relayA)
        var buffer = [UInt8](repeating: 0, count: 2048)
        var got: (Int, Endpoint)?
        #expect(try h.spin { got = try? a.receive(into: &buffer); return got != nil })
        #expect(got?.0 == 148 && Array(buffer[..<148]) == initiation, "the initiation, held until A spoke")
        _ = try h.spin(upTo: 0.2) { false }
        #expect((try? a.receive(into: &buffer)) ?? nil == nil, "nothing else was held")
        var forwarded: (Int, Endpoint)?
        #expect(try h.spin { forwarded = try? b.receive(into: &buffer); return forwarded != nil })
        #expect(forwarded?.0 == 1 && buffer[0] == 7)
    }

    @Test func aBadTokenGetsNoAnswerAndNothingIsForwarded() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let forged = Self.token(side: 0, key: Keys.relayKey(secret: Array("guessed".utf8)))
        #expect(try h.allocate(forged, from: a) == nil)
        var expired = Self.token(side: 0, expires: UnixTime.seconds() - 1)
        #expect(try h.allocate(expired, from: a) == nil)
        expired[5] ^= 1
        #expect(try h.allocate(expired, from: a) == nil)
        #expect(h.relay.allocationCount == 0)
        #expect(h.relay.counters.unauthenticated == 2 && h.relay.counters.expiredTokens == 1)
        // Nothing listens on the would-be allocation ports: datagrams sent there go nowhere.
        for port in (h.relay.service.local.port + 1)...(h.relay.service.local.port + 4) {
            try a.send([1], to: Endpoint(Self.localhost, port))
        }
        _ = try h.spin(upTo: 0.2) { false }
        #expect(h.relay.allocations.isEmpty)
    }

    @Test func onlyTheAddressTheTokenNamesIsLatched() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let intruder = try UDPSocket(binding: Endpoint(Self.stranger, 0))
        let portA = try #require(Self.port(try h.allocate(Self.token(side: 0), from: a)))
        let portB = try #require(Self.port(try h.allocate(Self.token(side: 1), from: b)))
        try b.send([0], to: Endpoint(Self.localhost, portB))
        #expect(try h.spin { h.relay.allocations.values.first?.sides[1].latched != nil })
        // The intruder (another address) sends into A's port: dropped and counted, B receives nothing.
        for _ in 0..<5 { try intruder.send([6, 6, 6], to: Endpoint(Self.localhost, portA)) }
        #expect(try h.spin { h.relay.allocations.values.first?.sides[0].drops == 5 })
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect((try b.receive(into: &buffer)) == nil)
        #expect(h.relay.allocations.values.first?.sides[0].latched == nil)
        #expect(h.relay.allocations.values.first?.sides[0].packets == 0)
    }

    /// A member that went direct gives its allocation back: the relay closes both ports at once, and
    /// nothing crosses any more. Only the token that granted a side releases it, signed with that
    /// token's reply key; a release of an earlier grant leaves the current one alone.
    @Test func aReleaseFreesTheAllocationAndStopsForwarding() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let earlier = Self.token(side: 0, expires: UnixTime.seconds() + 30)
        let tokenA = Self.token(side: 0), tokenB = Self.token(side: 1)
        _ = try #require(Self.port(try h.allocate(earlier, from: a)))
        let portA = try #require(Self.port(try h.allocate(tokenA, from: a)))
        let portB = try #require(Self.port(try h.allocate(tokenB, from: b)))
        try a.send([0], to: Endpoint(Self.localhost, portA))
        try b.send([0], to: Endpoint(Self.localhost, portB))
        #expect(try h.spin { h.relay.allocations.values.first?.sides.allSatisfy { $0.latched != nil } == true })

        func release(_ token: [UInt8], key: [UInt8]) throws -> RelayMessage? {
            try a.send(RelayMessage.release(nonce: 7, token: token).encoded(key: key), to: h.relay.service.local)
            var answer: RelayMessage?
            var buffer = [UInt8](repeating: 0, count: 256)
            _ = try h.spin(upTo: 0.3) {
                if let (count, _) = try? a.receive(into: &buffer) {
                    answer = try? buffer.withUnsafeBytes { try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count]), key: key) }
                }
                return answer != nil
            }
            return answer
        }
        // Signed with the wrong key: no answer, nothing freed. An earlier grant's token: answered, nothing freed.
        #expect(try release(tokenA, key: Keys.relayReplyKey(relayKey: Self.key, token: tokenB)) == nil)
        #expect(h.relay.counters.unauthenticated == 1)
        #expect(try release(earlier, key: Keys.relayReplyKey(relayKey: Self.key, token: earlier)) == .released(nonce: 7))
        #expect(h.relay.allocationCount == 1)
        // The current grant's token: freed, both ports closed.
        #expect(try release(tokenA, key: Keys.relayReplyKey(relayKey: Self.key, token: tokenA)) == .released(nonce: 7))
        #expect(h.relay.allocationCount == 0 && h.relay.counters.releasedAllocations == 1)
        #expect((try? UDPSocket(binding: Endpoint(Self.localhost, portA))) != nil)
        #expect((try? UDPSocket(binding: Endpoint(Self.localhost, portB))) != nil)
        try b.send([UInt8](repeating: 5, count: 40), to: Endpoint(Self.localhost, portB))
        var buffer = [UInt8](repeating: 0, count: 64)
        _ = try h.spin(upTo: 0.2) { false }
        #expect((try a.receive(into: &buffer)) == nil)
    }

    @Test func anIdleAllocationExpiresAndItsPortsAreFreed() throws {
        let h = try Harness(idle: .milliseconds(300))
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let portA = try #require(Self.port(try h.allocate(Self.token(side: 0), from: a)))
        #expect(h.relay.allocationCount == 1)
        #expect(try h.spin(upTo: 3) { h.relay.allocationCount == 0 })
        #expect(h.relay.counters.expiredAllocations == 1)
        // The port is closed: binding it again succeeds.
        #expect((try? UDPSocket(binding: Endpoint(Self.localhost, portA))) != nil)
    }

    @Test func allocationsAreBoundedPerPartyAndInTotal() throws {
        let h = try Harness(maxPerParty: 2, ports: 8)  // service port + 8 ports = 4 allocations
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        #expect(Self.port(try h.allocate(Self.token(side: 0, pair: 1, party: 1), from: a)) != nil)
        #expect(Self.port(try h.allocate(Self.token(side: 0, pair: 2, party: 1), from: a)) != nil)
        guard case .allocated(_, .partyLimit, _, _) = try h.allocate(Self.token(side: 0, pair: 3, party: 1), from: a) else {
            Issue.record("third allocation of one party not refused"); return
        }
        #expect(Self.port(try h.allocate(Self.token(side: 0, pair: 4, party: 2), from: a)) != nil)
        #expect(Self.port(try h.allocate(Self.token(side: 0, pair: 5, party: 2), from: a)) != nil)
        guard case .allocated(_, .full, _, _) = try h.allocate(Self.token(side: 0, pair: 6, party: 3), from: a) else {
            Issue.record("allocation beyond the port range not refused"); return
        }
        #expect(h.relay.allocationCount == 4)
        // The same token again refreshes, it does not allocate.
        #expect(Self.port(try h.allocate(Self.token(side: 0, pair: 1, party: 1), from: a)) != nil)
        #expect(h.relay.allocationCount == 4 && h.relay.counters.refreshed == 1)
    }

    @Test func malformedAndOversizedDatagramsAreCounted() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        try a.send([0x4C, 0x52, 1, 0x01, 0, 0], to: h.relay.service.local)
        try a.send([UInt8](repeating: 0x4C, count: 1000), to: h.relay.service.local)
        try a.send([0x4C, 0x52, 1, 0x02] + [UInt8](repeating: 0, count: 13), to: h.relay.service.local)
        #expect(try h.spin { h.relay.counters.malformed == 3 })
    }
}
