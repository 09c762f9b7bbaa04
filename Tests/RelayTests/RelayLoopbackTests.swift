import EventLoop
import LabSupport
import Net
import Relay
import Rendezvous
import Testing
import Time

/// The relay on loopback, in-process on its event loop: two "WireGuard" sockets allocate their
/// sides with tokens, latch them with authenticated latch datagrams, and datagrams cross from one
/// side's port to the other's, unframed.
@Suite(.serialized) struct RelayLoopbackTests {
    static let key = Keys.relayKey(secret: Array("relay secret".utf8))
    static let localhost = IPAddress.v4(IPv4Address(127, 0, 0, 1))
    /// Another loopback address: a source the tokens do not name.
    static let stranger = IPAddress.v4(IPv4Address(127, 0, 0, 2))

    final class Harness {
        let loop: EventLoop
        let clock = SystemClock()
        let relay: RelayServer
        init(idle: Duration = .seconds(120), maxPerParty: Int = 32, ports: Int = 20,
             listen: [IPAddress] = [RelayLoopbackTests.localhost]) throws {
            loop = try EventLoop()
            let (loop, clock) = (loop, clock)
            relay = try withFreePortRange(UInt16(ports), on: listen[0]) { range in
                var configuration = RelayServer.Configuration(listen: listen, ports: range, key: RelayLoopbackTests.key)
                configuration.idleTimeout = idle
                configuration.maxPerParty = maxPerParty
                return try RelayServer(configuration, loop: loop, clock: clock)
            }
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
        func allocate(_ token: [UInt8], from socket: UDPSocket, nonce: UInt64 = 99) throws -> RelayMessage? {
            try socket.send(RelayMessage.allocate(nonce: nonce, token: token).encoded(), to: service(for: socket))
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

        /// Sends the latch of `token`'s side, numbered `counter`, from `socket` to the side's `port`.
        func latch(_ socket: UDPSocket, port: UInt16, token: [UInt8], counter: UInt64) throws {
            try socket.send(RelayLoopbackTests.latch(port: port, token: token, counter: counter), to: Endpoint(RelayLoopbackTests.localhost, port))
        }

        var allocation: Allocation? { relay.allocations.values.first }

        /// The relay's service endpoint of `socket`'s address family.
        func service(for socket: UDPSocket) -> Endpoint {
            relay.services.first { $0.local.address.family == socket.local.address.family }!.local
        }
    }

    /// A latch datagram for the side `token` grants, at `port`.
    static func latch(port: UInt16, token: [UInt8], counter: UInt64) -> [UInt8] {
        RelayMessage.latch(port: port, counter: counter).encoded(key: Keys.relayReplyKey(relayKey: key, token: token))
    }

    static func token(side: UInt8, address: IPAddress = localhost, pair: UInt8 = 1, party: UInt64 = 1, key: [UInt8] = key,
                      expires: UInt64 = WallClock.unixSeconds() + 60) -> [UInt8] {
        RelayToken(side: side, address: address, expiresAt: expires, partyID: party, pairID: [UInt8](repeating: pair, count: 16)).encoded(key: key)
    }

    static func port(_ message: RelayMessage?) -> UInt16? {
        guard case .allocated(_, .granted, let port, _) = message else { return nil }
        return port
    }

    /// Waits for a datagram on `socket`: its bytes and source, or nil.
    static func receive(_ socket: UDPSocket, _ h: Harness, upTo seconds: Double = 2) throws -> ([UInt8], Endpoint)? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        var got: (Int, Endpoint)?
        _ = try h.spin(upTo: seconds) { got = try? socket.receive(into: &buffer); return got != nil }
        return got.map { (Array(buffer[..<$0.0]), $0.1) }
    }

    /// Two latched sides: A and B, with their tokens and relay ports.
    struct Pair {
        let a: UDPSocket, b: UDPSocket
        let tokenA: [UInt8], tokenB: [UInt8]
        let portA: UInt16, portB: UInt16
        var relayA: Endpoint { Endpoint(RelayLoopbackTests.localhost, portA) }
        var relayB: Endpoint { Endpoint(RelayLoopbackTests.localhost, portB) }
    }

    static func latchedPair(_ h: Harness) throws -> Pair {
        let a = try UDPSocket(binding: Endpoint(localhost, 0)), b = try UDPSocket(binding: Endpoint(localhost, 0))
        let tokenA = token(side: 0), tokenB = token(side: 1)
        let portA = try #require(port(try h.allocate(tokenA, from: a)))
        let portB = try #require(port(try h.allocate(tokenB, from: b)))
        try h.latch(a, port: portA, token: tokenA, counter: 1)
        try h.latch(b, port: portB, token: tokenB, counter: 1)
        #expect(try h.spin { h.allocation?.sides[0].latched == a.local && h.allocation?.sides[1].latched == b.local })
        return Pair(a: a, b: b, tokenA: tokenA, tokenB: tokenB, portA: portA, portB: portB)
    }

    /// A relay on IPv4 and IPv6: side 0's member speaks IPv4, side 1's IPv6 (its port moves to the
    /// relay's IPv6 address when its token arrives); both latch, and datagrams cross both ways. A
    /// relay without an address of a token's family refuses it as such.
    @Test func aSideOverIPv4MeetsASideOverIPv6() throws {
        let loopback6 = IPAddress("::1")!
        let h = try Harness(listen: [Self.localhost, loopback6])
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(loopback6, 0))
        let tokenA = Self.token(side: 0), tokenB = Self.token(side: 1, address: loopback6)
        let portA = try #require(Self.port(try h.allocate(tokenA, from: a)))
        let portB = try #require(Self.port(try h.allocate(tokenB, from: b)))
        let relayA = Endpoint(Self.localhost, portA), relayB = Endpoint(loopback6, portB)
        try a.send(Self.latch(port: portA, token: tokenA, counter: 1), to: relayA)
        try b.send(Self.latch(port: portB, token: tokenB, counter: 1), to: relayB)
        #expect(try h.spin { h.allocation?.sides[0].latched == a.local && h.allocation?.sides[1].latched == b.local })
        try a.send([1, 2, 3], to: relayA)
        let there = try Self.receive(b, h)
        #expect(there?.0 == [1, 2, 3] && there?.1 == relayB, "\(String(describing: there))")
        try b.send([4, 5], to: relayB)
        let back = try Self.receive(a, h)
        #expect(back?.0 == [4, 5] && back?.1 == relayA, "\(String(describing: back))")

        let v4Only = try Harness()
        guard case .allocated(_, .family, _, _) = try v4Only.allocate(Self.token(side: 0, address: loopback6, pair: 2), from: a) else {
            Issue.record("a token naming an IPv6 address is refused by an IPv4-only relay")
            return
        }
        #expect(v4Only.relay.counters.refusedFamily == 1)
    }

    @Test func datagramsCrossUnframedBothWaysAndAreCounted() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let tokenA = Self.token(side: 0), tokenB = Self.token(side: 1)
        let portA = try #require(Self.port(try h.allocate(tokenA, from: a)))
        let portB = try #require(Self.port(try h.allocate(tokenB, from: b)))
        #expect(portA != portB && h.relay.allocationCount == 1)
        let relayA = Endpoint(Self.localhost, portA), relayB = Endpoint(Self.localhost, portB)

        // Only a latch latches a side: A's datagram before its latch is dropped, and B's latch is not forwarded.
        try a.send([UInt8](repeating: 8, count: 40), to: relayA)
        try h.latch(b, port: portB, token: tokenB, counter: 1)
        #expect(try h.spin { h.allocation?.sides[1].latched == b.local })
        #expect(h.allocation?.sides[0].latched == nil && h.allocation?.sides[0].drops == 1)
        try h.latch(a, port: portA, token: tokenA, counter: 1)
        #expect(try h.spin { h.allocation?.sides[0].latched == a.local })
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

        let allocation = try #require(h.allocation)
        #expect(allocation.sides[0].packets == 50)
        #expect(allocation.sides[0].bytes == UInt64((0..<50).reduce(0) { $0 + 100 + $1 }))
        #expect(allocation.sides[1].packets == 1 && allocation.sides[1].drops == 0)
        #expect(allocation.sides.allSatisfy { $0.refusedLatches == 0 })
    }

    /// Only the latest small datagram is held for a side that has not latched: a larger one is
    /// dropped, an earlier one replaced (both counted as drops); it is delivered when the side
    /// latches. The side's own datagrams before its latch are dropped (they latch nothing, and reach
    /// nobody: the held initiation crosses none of its own).
    @Test func onlyTheLatestSmallDatagramIsHeldForASideThatHasNotLatched() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let tokenA = Self.token(side: 0), tokenB = Self.token(side: 1)
        let portA = try #require(Self.port(try h.allocate(tokenA, from: a)))
        let portB = try #require(Self.port(try h.allocate(tokenB, from: b)))
        let relayA = Endpoint(Self.localhost, portA), relayB = Endpoint(Self.localhost, portB)
        let initiation = [UInt8](repeating: 1, count: 148)
        try h.latch(b, port: portB, token: tokenB, counter: 1)
        try b.send(initiation, to: relayB)
        try b.send([UInt8](repeating: 2, count: 400), to: relayB)
        #expect(try h.spin { h.allocation?.sides[1].drops == 1 }, "the large one dropped (the latch is not held)")
        // A later latch of B (its next liveness read) does not replace the held initiation; a second initiation does.
        try h.latch(b, port: portB, token: tokenB, counter: 2)
        try b.send(initiation, to: relayB)
        #expect(try h.spin { h.allocation?.sides[1].drops == 2 }, "the first initiation replaced by the second")
        // A's own initiation before its latch reaches nobody.
        try a.send([UInt8](repeating: 3, count: 148), to: relayA)
        #expect(try h.spin { h.allocation?.sides[0].drops == 1 })
        try h.latch(a, port: portA, token: tokenA, counter: 1)
        let held = try Self.receive(a, h)
        #expect(held?.0 == initiation && held?.1 == relayA, "the initiation, held until A latched")
        #expect(try Self.receive(a, h, upTo: 0.2) == nil, "nothing else was held")
        #expect(try Self.receive(b, h, upTo: 0.2) == nil, "B got neither A's latch nor its early initiation")
        try a.send([7], to: relayA)
        #expect(try Self.receive(b, h)?.0 == [7])
    }

    @Test func aBadTokenGetsNoAnswerAndNothingIsForwarded() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let forged = Self.token(side: 0, key: Keys.relayKey(secret: Array("guessed".utf8)))
        #expect(try h.allocate(forged, from: a) == nil)
        var expired = Self.token(side: 0, expires: WallClock.unixSeconds() - 1)
        #expect(try h.allocate(expired, from: a) == nil)
        expired[5] ^= 1
        #expect(try h.allocate(expired, from: a) == nil)
        #expect(h.relay.allocationCount == 0)
        #expect(h.relay.counters.unauthenticated == 2 && h.relay.counters.expiredTokens == 1)
        // Nothing listens on the would-be allocation ports: datagrams sent there go nowhere.
        for port in (h.relay.services[0].local.port + 1)...(h.relay.services[0].local.port + 4) {
            try a.send([1], to: Endpoint(Self.localhost, port))
        }
        _ = try h.spin(upTo: 0.2) { false }
        #expect(h.relay.allocations.isEmpty)
    }

    @Test func onlyTheAddressTheTokenNamesIsLatched() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let intruder = try UDPSocket(binding: Endpoint(Self.stranger, 0))
        let tokenA = Self.token(side: 0), tokenB = Self.token(side: 1)
        let portA = try #require(Self.port(try h.allocate(tokenA, from: a)))
        let portB = try #require(Self.port(try h.allocate(tokenB, from: b)))
        try h.latch(b, port: portB, token: tokenB, counter: 1)
        #expect(try h.spin { h.allocation?.sides[1].latched != nil })
        // The intruder (another address) sends into A's port, a valid latch of A's among its datagrams:
        // dropped and counted, B receives nothing.
        try intruder.send(Self.latch(port: portA, token: tokenA, counter: 1), to: Endpoint(Self.localhost, portA))
        for _ in 0..<5 { try intruder.send([6, 6, 6], to: Endpoint(Self.localhost, portA)) }
        #expect(try h.spin { h.allocation?.sides[0].drops == 5 && h.allocation?.sides[0].refusedLatches == 1 })
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect((try b.receive(into: &buffer)) == nil)
        #expect(h.allocation?.sides[0].latched == nil)
        #expect(h.allocation?.sides[0].packets == 0)
    }

    /// The CGNAT neighbour: another port of the member's own public address. Its datagrams into the
    /// member's allocation port (WireGuard-like, or latches it cannot authenticate) neither latch the
    /// side nor reach the peer, and it receives none of the peer's traffic, which still reaches the member.
    @Test func anotherPortOfTheSameAddressNeitherLatchesNorReceives() throws {
        let h = try Harness()
        let pair = try Self.latchedPair(h)
        let neighbour = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let keepalive = [4, 0, 0, 0] + [UInt8](repeating: 0, count: 28)
        for _ in 0..<3 { try neighbour.send(keepalive, to: pair.relayA) }
        try neighbour.send(RelayMessage.latch(port: pair.portA, counter: 99).encoded(key: Keys.relayReplyKey(relayKey: Self.key, token: pair.tokenB)),
                           to: pair.relayA)
        var forged = Self.latch(port: pair.portA, token: pair.tokenA, counter: 100)
        forged[12] ^= 1
        try neighbour.send(forged, to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].drops == 3 && h.allocation?.sides[0].refusedLatches == 2 })
        #expect(h.allocation?.sides[0].latched == pair.a.local)
        #expect(try Self.receive(pair.b, h, upTo: 0.2) == nil, "the neighbour's datagrams reach nobody")
        for index in 0..<5 { try pair.b.send([UInt8](repeating: UInt8(index), count: 60), to: pair.relayB) }
        for index in 0..<5 { #expect(try Self.receive(pair.a, h)?.0 == [UInt8](repeating: UInt8(index), count: 60)) }
        #expect(try Self.receive(neighbour, h, upTo: 0.3) == nil, "the neighbour receives nothing")
    }

    /// A NAT rebinding: the member's WireGuard port gets a new public port, and its next latch (a
    /// fresh counter) moves the side there. A latch seen before, sent again from anywhere (the old
    /// port, or a neighbour's), does nothing.
    @Test func aFreshLatchFromANewPortReLatchesAndAReplayedOneDoesNothing() throws {
        let h = try Harness()
        let pair = try Self.latchedPair(h)
        let rebound = try UDPSocket(binding: Endpoint(Self.localhost, 0)), neighbour = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let latch = Self.latch(port: pair.portA, token: pair.tokenA, counter: 2)
        try rebound.send(latch, to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].latched == rebound.local })
        try pair.b.send([1, 1], to: pair.relayB)
        #expect(try Self.receive(rebound, h)?.0 == [1, 1], "the peer's traffic follows the rebinding")
        try rebound.send([2, 2], to: pair.relayA)
        #expect(try Self.receive(pair.b, h)?.0 == [2, 2])

        // The same latch, and the first one, replayed from another port: refused, the side stays.
        try neighbour.send(latch, to: pair.relayA)
        try neighbour.send(Self.latch(port: pair.portA, token: pair.tokenA, counter: 1), to: pair.relayA)
        try pair.a.send(latch, to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].refusedLatches == 3 })
        #expect(h.allocation?.sides[0].latched == rebound.local)
        try pair.b.send([3, 3], to: pair.relayB)
        #expect(try Self.receive(rebound, h)?.0 == [3, 3])
        #expect(try Self.receive(neighbour, h, upTo: 0.2) == nil && Self.receive(pair.a, h, upTo: 0.1) == nil)
        // A latch for the other side's port, under this side's key: refused.
        try rebound.send(Self.latch(port: pair.portB, token: pair.tokenA, counter: 10), to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].refusedLatches == 4 })
    }

    /// A side granted again with another token for the same address takes latches under either
    /// token's reply key (the member keeps the grant whose answer reached it last, which may be the
    /// earlier one), and no older one; the counter goes on across them.
    @Test func latchesCountUnderTheLastTwoGrantsOfASide() throws {
        let h = try Harness()
        let pair = try Self.latchedPair(h)
        let second = Self.token(side: 0, expires: WallClock.unixSeconds() + 90), third = Self.token(side: 0, expires: WallClock.unixSeconds() + 100)
        #expect(Self.port(try h.allocate(second, from: pair.a)) == pair.portA)
        #expect(h.allocation?.sides[0].latched == pair.a.local, "the same address: still latched")
        let moved = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        try moved.send(Self.latch(port: pair.portA, token: pair.tokenA, counter: 2), to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].latched == moved.local }, "under the first token's key")
        try pair.a.send(Self.latch(port: pair.portA, token: second, counter: 2), to: pair.relayA)
        try pair.a.send(Self.latch(port: pair.portA, token: second, counter: 3), to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].latched == pair.a.local && h.allocation?.sides[0].refusedLatches == 1 },
                "under the second token's key, counting on")
        #expect(Self.port(try h.allocate(third, from: pair.a)) == pair.portA)
        try moved.send(Self.latch(port: pair.portA, token: pair.tokenA, counter: 4), to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].refusedLatches == 2 }, "the first token's key no longer counts")
        try moved.send(Self.latch(port: pair.portA, token: second, counter: 5), to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].latched == moved.local })
    }

    /// A side granted again with a token naming another address is unlatched: nothing more goes to
    /// the old endpoint, and the side latches again from the new address under the new token.
    @Test func aTokenForAnotherAddressUnlatchesTheSide() throws {
        let h = try Harness()
        let pair = try Self.latchedPair(h)
        let moved = try UDPSocket(binding: Endpoint(Self.stranger, 0))
        let tokenMoved = Self.token(side: 0, address: Self.stranger)
        #expect(Self.port(try h.allocate(tokenMoved, from: moved)) == pair.portA)
        #expect(h.allocation?.sides[0].latched == nil)
        try pair.b.send([5], to: pair.relayB)
        #expect(try Self.receive(pair.a, h, upTo: 0.2) == nil)
        try moved.send(Self.latch(port: pair.portA, token: tokenMoved, counter: 1), to: pair.relayA)
        #expect(try h.spin { h.allocation?.sides[0].latched == moved.local })
        #expect(try Self.receive(moved, h)?.0 == [5], "held for the side until it latched again")
    }

    /// A token grants its side once. The same request again (the client resends until answered) gets
    /// the same answer and changes nothing; the token under another nonce (a captured allocate
    /// replayed) gets no answer, and neither refreshes nor, once released, recreates the allocation.
    @Test func aReplayedAllocateFromAnotherNonceIsRefused() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), replayer = try UDPSocket(binding: Endpoint(Self.stranger, 0))
        let token = Self.token(side: 0)
        let first = try h.allocate(token, from: a, nonce: 1)
        let port = try #require(Self.port(first))
        #expect(try h.allocate(token, from: a, nonce: 1) == first, "a resent request: the same answer")
        #expect(h.relay.counters.granted == 1 && h.relay.counters.refreshed == 0)
        #expect(try h.allocate(token, from: replayer, nonce: 2) == nil)
        #expect(h.relay.counters.replayedTokens == 1 && h.relay.counters.refreshed == 0)

        let replyKey = Keys.relayReplyKey(relayKey: Self.key, token: token)
        try a.send(RelayMessage.release(nonce: 3, token: token).encoded(key: replyKey), to: h.relay.services[0].local)
        #expect(try h.spin { h.relay.allocationCount == 0 })
        #expect(try h.allocate(token, from: replayer, nonce: 4) == nil)
        #expect(try h.allocate(token, from: replayer, nonce: 1) == first, "the first request again: its answer, nothing more")
        #expect(h.relay.allocationCount == 0 && h.relay.counters.replayedTokens == 2 && h.relay.counters.granted == 1)
        #expect((try? UDPSocket(binding: Endpoint(Self.localhost, port))) != nil, "the port stays free")
    }

    /// A load query (authenticated with the relay key) is answered once: the same query again is
    /// refused and counted.
    @Test func aReplayedLoadQueryIsAnsweredOnce() throws {
        let h = try Harness()
        let socket = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let query = RelayMessage.loadQuery(timestampMillis: WallClock.unixMillis(), nonce: 42).encoded(key: Self.key)
        for _ in 0..<3 { try socket.send(query, to: h.relay.services[0].local) }
        let answer = try Self.receive(socket, h)
        let load = try answer.map { bytes, _ in try bytes.withUnsafeBytes { try RelayMessage(decoding: $0, key: Self.key) } }
        guard case .load(_, 42, 0, _) = load else { Issue.record("no load answer"); return }
        #expect(try h.spin { h.relay.counters.replayedLoadQueries == 2 })
        #expect(try Self.receive(socket, h, upTo: 0.2) == nil, "answered once")
        #expect(h.relay.counters.loadQueries == 1)
        // A new query (another nonce) is answered.
        try socket.send(RelayMessage.loadQuery(timestampMillis: WallClock.unixMillis(), nonce: 43).encoded(key: Self.key), to: h.relay.services[0].local)
        #expect(try Self.receive(socket, h) != nil)
    }

    /// A member that went direct gives its allocation back: the relay closes both ports at once, and
    /// nothing crosses any more. Only the token that granted a side releases it, signed with that
    /// token's reply key; a release of an earlier grant leaves the current one alone.
    @Test func aReleaseFreesTheAllocationAndStopsForwarding() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0)), b = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let earlier = Self.token(side: 0, expires: WallClock.unixSeconds() + 30)
        let tokenA = Self.token(side: 0), tokenB = Self.token(side: 1)
        _ = try #require(Self.port(try h.allocate(earlier, from: a)))
        let portA = try #require(Self.port(try h.allocate(tokenA, from: a)))
        let portB = try #require(Self.port(try h.allocate(tokenB, from: b)))
        try h.latch(a, port: portA, token: tokenA, counter: 1)
        try h.latch(b, port: portB, token: tokenB, counter: 1)
        #expect(try h.spin { h.relay.allocations.values.first?.sides.allSatisfy { $0.latched != nil } == true })

        func release(_ token: [UInt8], key: [UInt8]) throws -> RelayMessage? {
            try a.send(RelayMessage.release(nonce: 7, token: token).encoded(key: key), to: h.relay.services[0].local)
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
        // Another token for a granted side refreshes it, it does not allocate.
        #expect(Self.port(try h.allocate(Self.token(side: 0, pair: 1, party: 1, expires: WallClock.unixSeconds() + 90), from: a)) != nil)
        #expect(h.relay.allocationCount == 4 && h.relay.counters.refreshed == 1)
    }

    @Test func malformedAndOversizedDatagramsAreCounted() throws {
        let h = try Harness()
        let a = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        try a.send([0x4C, 0x52, 1, 0x01, 0, 0], to: h.relay.services[0].local)
        try a.send([UInt8](repeating: 0x4C, count: 1000), to: h.relay.services[0].local)
        try a.send([0x4C, 0x52, 1, 0x02] + [UInt8](repeating: 0, count: 13), to: h.relay.services[0].local)
        #expect(try h.spin { h.relay.counters.malformed == 3 })
    }
}
