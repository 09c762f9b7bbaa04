#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import Logging
import Net
import Rendezvous
import StateChart

/// `lanrage relay`: allocates per pair of members one UDP port for each side, granted only with a
/// token from the control server, and forwards datagrams between the two sides with no framing.
public final class RelayServer {
    public struct Configuration: Sendable {
        public var listen: IPAddress
        /// The service port is `ports.lowerBound`; allocations use the ports above it.
        public var ports: ClosedRange<UInt16>
        public var key: [UInt8]
        public var idleTimeout: Duration = .seconds(120)
        public var maxPerParty = 32
        /// Allocation requests per source IP: average per second and burst.
        public var requestsPerSecond = 10.0
        public var requestBurst = 20.0

        public init(listen: IPAddress, ports: ClosedRange<UInt16>, key: [UInt8]) {
            self.listen = listen
            self.ports = ports
            self.key = key
        }

        /// How many allocations the port range holds (two ports each).
        public var capacity: Int { (Int(ports.upperBound) - Int(ports.lowerBound)) / 2 }
    }

    /// What the relay dropped or did, by reason.
    public struct Counters: Sendable, Equatable {
        public var granted = 0
        public var refreshed = 0
        public var refusedFull = 0
        public var refusedPartyLimit = 0
        public var unauthenticated = 0
        public var expiredTokens = 0
        public var malformed = 0
        public var rateLimited = 0
        public var expiredAllocations = 0
        public var releasedAllocations = 0
        public var loadQueries = 0
    }

    public let configuration: Configuration
    public let service: UDPSocket
    public private(set) var counters = Counters()
    public private(set) var allocations: [[UInt8]: Allocation] = [:]
    private var freePorts: [UInt16]
    private var perParty: [UInt64: Int] = [:]
    private var limiter: RateLimiter
    private let loop: EventLoop
    private let clock: MonotonicClock
    private var buffer = [UInt8](repeating: 0, count: 65_536)
    public var logger = Logger(label: "lanrage.relay")

    public init(_ configuration: Configuration, loop: EventLoop, clock: MonotonicClock = MonotonicClock()) throws {
        precondition(configuration.ports.count >= 3, "a relay needs its service port and at least one pair of ports")
        self.configuration = configuration
        self.loop = loop
        self.clock = clock
        service = try UDPSocket(binding: Endpoint(configuration.listen, configuration.ports.lowerBound))
        // A party starting at once asks for its allocations in one burst: let it wait in the kernel.
        service.enlargeBuffers(to: 1 << 20)
        freePorts = Array((configuration.ports.lowerBound + 1)...configuration.ports.upperBound).reversed()
        limiter = RateLimiter(perSecond: configuration.requestsPerSecond, burst: configuration.requestBurst, capacity: 4096)
        try loop.register(service.descriptor) { [unowned self] in self.serviceReadable() }
        let sweep = min(Duration.seconds(1), configuration.idleTimeout / 4)
        loop.addTimers(Ticker(every: sweep, clock: clock) { [unowned self] in self.expireIdle() })
    }

    public var allocationCount: Int { allocations.count }

    // MARK: Service port

    private func serviceReadable() {
        for _ in 0..<ReadBatch.datagrams {
            let received: (count: Int, from: Endpoint)?
            do { received = try service.receive(into: &buffer) } catch { continue }
            guard let (count, from) = received else { return }
            handleService(count: count, from: from)
        }
    }

    private func handleService(count: Int, from: Endpoint) {
        guard limiter.allow(from.address, now: clock.now) else { counters.rateLimited += 1; return }
        let message: RelayMessage
        do {
            message = try buffer.withUnsafeBytes { raw in
                try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: raw[..<count]), key: configuration.key)
            }
        } catch WireError.unauthenticated {
            counters.unauthenticated += 1
            return
        } catch {
            counters.malformed += 1
            return
        }
        switch message {
        case .allocate(let nonce, let tokenBytes):
            let token: RelayToken
            do {
                token = try tokenBytes.withUnsafeBytes { try RelayToken(verifying: $0, key: configuration.key, nowSeconds: UnixTime.seconds()) }
            } catch WireError.expired {
                counters.expiredTokens += 1
                return
            } catch WireError.unauthenticated {
                counters.unauthenticated += 1
                logger.debug("allocation refused", metadata: ["from": "\(from)", "reason": "bad token"])
                return
            } catch {
                counters.malformed += 1
                return
            }
            let (status, port) = allocate(token, bytes: tokenBytes)
            let idle = UInt16(clamping: configuration.idleTimeout.components.seconds)
            let replyKey = Keys.relayReplyKey(relayKey: configuration.key, token: tokenBytes)
            _ = try? service.send(RelayMessage.allocated(nonce: nonce, status: status, port: port, idleSeconds: idle)
                .encoded(key: replyKey), to: from)
        case .loadQuery(let timestamp, let nonce):
            let now = UnixTime.millis()
            guard (timestamp > now ? timestamp - now : now - timestamp) <= ReplayWindow.skewMillis else {
                counters.expiredTokens += 1
                return
            }
            counters.loadQueries += 1
            let load = RelayMessage.load(timestampMillis: now, nonce: nonce, allocations: UInt16(clamping: allocations.count),
                                         capacity: UInt16(clamping: configuration.capacity))
            _ = try? service.send(load.encoded(key: configuration.key), to: from)
        case .release(let nonce, let tokenBytes):
            // The message's tag (under the token's reply key) proves the member the token was issued to
            // sent it; the token may have expired since the grant.
            guard let token = try? tokenBytes.withUnsafeBytes({ try RelayToken(verifying: $0, key: configuration.key, nowSeconds: 0) }) else {
                counters.unauthenticated += 1
                return
            }
            if let allocation = allocations[token.pairID], allocation.sides[Int(token.side)].token == tokenBytes {
                counters.releasedAllocations += 1
                release(token.pairID, allocation, reason: "released")
            }
            let replyKey = Keys.relayReplyKey(relayKey: configuration.key, token: tokenBytes)
            _ = try? service.send(RelayMessage.released(nonce: nonce).encoded(key: replyKey), to: from)
        case .allocated, .load, .released:
            counters.malformed += 1
        }
    }

    /// Grants side `token.side` of the pair's allocation (creating the allocation on first use);
    /// `bytes` is the token as presented, which a release of this side must present again.
    func allocate(_ token: RelayToken, bytes: [UInt8]) -> (RelayMessage.AllocationStatus, UInt16) {
        let side = Int(token.side)
        if let existing = allocations[token.pairID] {
            if existing.sides[side].allowed == nil { counters.granted += 1 } else { counters.refreshed += 1 }
            if existing.sides[side].allowed != token.address { existing.sides[side].latched = nil }
            existing.sides[side].allowed = token.address
            existing.sides[side].token = bytes
            existing.lastActivity = clock.now
            return (.granted, existing.sides[side].port)
        }
        guard (perParty[token.partyID] ?? 0) < configuration.maxPerParty else {
            counters.refusedPartyLimit += 1
            return (.partyLimit, 0)
        }
        var sockets: [UDPSocket] = []
        while sockets.count < 2, let port = freePorts.popLast() {
            if let socket = try? UDPSocket(binding: Endpoint(configuration.listen, port)) {
                sockets.append(socket)
            }
        }
        guard sockets.count == 2 else {
            freePorts.append(contentsOf: sockets.map(\.local.port))
            counters.refusedFull += 1
            return (.full, 0)
        }
        let allocation = Allocation(pairID: token.pairID, partyID: token.partyID, sockets: sockets, now: clock.now)
        allocation.sides[side].allowed = token.address
        allocation.sides[side].token = bytes
        allocations[token.pairID] = allocation
        perParty[token.partyID, default: 0] += 1
        counters.granted += 1
        for index in 0..<2 {
            try? loop.register(sockets[index].descriptor) { [unowned self, unowned allocation] in
                self.forward(allocation, from: index)
            }
        }
        logger.info("allocated", metadata: ["ports": "\(sockets[0].local.port),\(sockets[1].local.port)",
                                            "allocations": "\(allocations.count)"])
        return (.granted, allocation.sides[side].port)
    }

    // MARK: Forwarding

    /// Reads side `index`'s socket (at most ``ReadBatch/datagrams`` a round): each datagram from the side's named address is sent on from
    /// the other side's socket to the other side's latched endpoint.
    private func forward(_ allocation: Allocation, from index: Int) {
        let other = 1 - index
        let inbound = allocation.sockets[index].descriptor
        var storage = sockaddr_storage()
        var activity = false
        for _ in 0..<ReadBatch.datagrams {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(inbound, raw.baseAddress, raw.count, 0, $0, &length) }
                }
            }
            if count < 0 {
                if errno == EINTR || errno == ECONNREFUSED { continue }
                break
            }
            guard let allowed = allocation.sides[index].allowed, Self.address(of: storage, matches: allowed) else {
                allocation.sides[index].drops += 1
                continue
            }
            if !Self.same(storage, allocation.destinations[index]) {
                let first = allocation.destinationLengths[index] == 0
                if let source = Endpoint(storage) { allocation.latch(index, source) }
                if first { deliverHeld(allocation, to: index, latchedBy: count) }
            }
            activity = true
            guard allocation.destinationLengths[other] > 0 else {
                // The other side has not spoken yet: keep the latest small WireGuard message for it. A bare
                // latch datagram means nothing to it, and must not replace a handshake held before it (the
                // agent's latch can arrive after WireGuard's first initiation).
                if count < Allocation.wireGuardMinimum { continue }
                if count <= Allocation.heldLimit {
                    if allocation.held[other] != nil { allocation.sides[index].drops += 1 }
                    allocation.held[other] = (Array(buffer[..<count]), clock.now)
                } else {
                    allocation.sides[index].drops += 1
                }
                continue
            }
            buffer.withUnsafeBytes { allocation.send(UnsafeRawBufferPointer(rebasing: $0[..<count]), to: other) }
        }
        if activity { allocation.lastActivity = clock.now }
    }

    /// Sends side `index` the datagram the other side sent before `index` was latched, if it is
    /// recent and `index` latched with a bare latch datagram (shorter than any WireGuard message,
    /// as the agent sends before its first handshake). A side whose first datagram is a WireGuard
    /// message of its own does not get it: two handshake initiations would cross, and both sides
    /// would wait as responders for WireGuard's retry 5 s later. Counted as the other side's.
    private func deliverHeld(_ allocation: Allocation, to index: Int, latchedBy count: Int) {
        guard let held = allocation.held[index] else { return }
        allocation.held[index] = nil
        let sender = 1 - index
        guard count < Allocation.wireGuardMinimum, clock.now - held.at <= Allocation.heldLifetime else {
            allocation.sides[sender].drops += 1
            return
        }
        held.bytes.withUnsafeBytes { allocation.send($0, to: index) }
    }

    static func address(of storage: sockaddr_storage, matches address: IPAddress) -> Bool {
        switch address {
        case .v4(let v4):
            guard Int32(storage.ss_family) == AF_INET else { return false }
            return withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self).sin_addr.s_addr } == v4.value.bigEndian
        case .v6(let v6):
            guard Int32(storage.ss_family) == AF_INET6 else { return false }
            return withUnsafeBytes(of: storage) { raw in
                withUnsafeBytes(of: raw.load(as: sockaddr_in6.self).sin6_addr) { $0.elementsEqual(v6.bytes) }
            }
        }
    }

    /// Whether two IPv4/IPv6 socket addresses name the same address and port.
    static func same(_ a: sockaddr_storage, _ b: sockaddr_storage) -> Bool {
        guard a.ss_family == b.ss_family else { return false }
        return withUnsafeBytes(of: a) { ra in
            withUnsafeBytes(of: b) { rb in
                switch Int32(a.ss_family) {
                case AF_INET:
                    let x = ra.load(as: sockaddr_in.self), y = rb.load(as: sockaddr_in.self)
                    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr
                case AF_INET6:
                    let x = ra.load(as: sockaddr_in6.self), y = rb.load(as: sockaddr_in6.self)
                    return x.sin6_port == y.sin6_port
                        && withUnsafeBytes(of: x.sin6_addr) { p in withUnsafeBytes(of: y.sin6_addr) { p.elementsEqual($0) } }
                default:
                    return false
                }
            }
        }
    }

    // MARK: Expiry

    /// Frees the allocations idle for longer than the idle timeout.
    public func expireIdle() {
        let limit = clock.now - configuration.idleTimeout.nanoseconds
        for (pair, allocation) in allocations where allocation.lastActivity < limit {
            release(pair, allocation, reason: "expired")
            counters.expiredAllocations += 1
        }
    }

    /// Closes the allocation's ports: nothing more is forwarded for the pair.
    private func release(_ pair: [UInt8], _ allocation: Allocation, reason: Logger.Message) {
        for socket in allocation.sockets {
            loop.unregister(socket.descriptor)
            freePorts.append(socket.local.port)
        }
        allocations[pair] = nil
        perParty[allocation.partyID, default: 1] -= 1
        if perParty[allocation.partyID] == 0 { perParty[allocation.partyID] = nil }
        logger.info(reason, metadata: Self.report(allocation))
    }

    /// One allocation's counters, per side (side 0, side 1).
    public static func report(_ allocation: Allocation) -> Logger.Metadata {
        [
            "ports": "\(allocation.sides[0].port),\(allocation.sides[1].port)",
            "latched": "\(allocation.sides[0].latched.map(\.description) ?? "-"),\(allocation.sides[1].latched.map(\.description) ?? "-")",
            "packets": "\(allocation.sides[0].packets),\(allocation.sides[1].packets)",
            "bytes": "\(allocation.sides[0].bytes),\(allocation.sides[1].bytes)",
            "drops": "\(allocation.sides[0].drops),\(allocation.sides[1].drops)",
        ]
    }

    /// One line of counters, for logs (SIGHUP and exit).
    public var summary: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "allocations": "\(allocations.count)", "granted": "\(counters.granted)", "refreshed": "\(counters.refreshed)",
            "refused_full": "\(counters.refusedFull)", "refused_party_limit": "\(counters.refusedPartyLimit)",
            "unauthenticated": "\(counters.unauthenticated)", "expired_tokens": "\(counters.expiredTokens)",
            "malformed": "\(counters.malformed)", "rate_limited": "\(counters.rateLimited)",
            "expired_allocations": "\(counters.expiredAllocations)", "released_allocations": "\(counters.releasedAllocations)",
        ]
        let sides = allocations.values.flatMap(\.sides)
        metadata["forwarded_packets"] = "\(sides.reduce(0) { $0 + $1.packets })"
        metadata["forwarded_bytes"] = "\(sides.reduce(0) { $0 + $1.bytes })"
        metadata["dropped_packets"] = "\(sides.reduce(0) { $0 + $1.drops })"
        return metadata
    }
}
