import CLinux
import Output
import Net
import Rendezvous
import Time

/// What the relay decides, without its sockets: the service port's protocol (allocation requests
/// granted only with a token from the control server, each token once; releases; load queries),
/// the allocations with their ports and sides, the latches that say where each side is, and which
/// datagram arriving on a side's port goes on to the other side. Its ports are a ``RelayPorts``'s:
/// the relay server's UDP sockets, or the simulation's.
public final class RelayCore {
    public struct Configuration: Sendable {
        /// The addresses to listen on: one, or one IPv4 and one IPv6.
        public var listen: [IPAddress]
        /// The service port is `ports.lowerBound`; allocations use the ports above it.
        public var ports: ClosedRange<UInt16>
        public var key: [UInt8]
        public var idleTimeout: Duration = .seconds(120)
        /// Allocations one party may hold at once: a starting party holds one per pair for its
        /// first seconds (the early relay), and its pairs that need the relay keep theirs — a party
        /// of 20 members behind symmetric NATs holds 190.
        public var maxPerParty = 256
        /// Allocation requests per source IP: average per second and burst.
        public var requestsPerSecond = 10.0
        public var requestBurst = 20.0
        /// Used tokens remembered until they expire (see `UsedTokens`): about 540 allocation requests
        /// a second with tokens of 120 s.
        public var usedTokenCapacity = 65_536

        public init(listen: [IPAddress], ports: ClosedRange<UInt16>, key: [UInt8]) {
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
        /// Allocation requests refused: the token names an address of a family the relay has no address of.
        public var refusedFamily = 0
        public var unauthenticated = 0
        public var expiredTokens = 0
        public var malformed = 0
        public var rateLimited = 0
        public var expiredAllocations = 0
        public var releasedAllocations = 0
        public var loadQueries = 0
        /// Allocation requests refused: their token was used by another request (another nonce).
        public var replayedTokens = 0
        /// Load queries refused: the same query was answered before.
        public var replayedLoadQueries = 0
    }

    public let configuration: Configuration
    public private(set) var counters = Counters()
    public private(set) var allocations: [[UInt8]: Allocation] = [:]
    private var freePorts: [UInt16]
    private var perParty: [UInt64: Int] = [:]
    private var limiter: RateLimiter
    private var usedTokens: UsedTokens
    private var loadQueryWindow = ReplayWindow()
    private unowned(unsafe) let ports: any RelayPorts
    private let clock: any TimeSource
    public var logger = Logger(label: "lanrage.relay")

    /// A core whose allocation ports are `ports`'s. The service port (`ports.lowerBound`) is the
    /// owner's: it hands what arrives there to ``service(_:from:)``.
    public init(_ configuration: Configuration, ports: any RelayPorts, clock: any TimeSource) {
        precondition(configuration.ports.count >= 3, "a relay needs its service port and at least one pair of ports")
        self.configuration = configuration
        self.ports = ports
        self.clock = clock
        freePorts = Array((configuration.ports.lowerBound + 1)...configuration.ports.upperBound).reversed()
        limiter = RateLimiter(perSecond: configuration.requestsPerSecond, burst: configuration.requestBurst, capacity: 4096)
        usedTokens = UsedTokens(capacity: configuration.usedTokenCapacity)
    }

    public var allocationCount: Int { allocations.count }

    // MARK: Service port

    /// A datagram from `from` on a service port: the answer to send back to `from`, if any.
    public func service(_ datagram: UnsafeRawBufferPointer, from: Endpoint) -> [UInt8]? {
        guard limiter.allow(from.address, now: clock.now) else { counters.rateLimited += 1; return nil }
        let message: RelayMessage
        do throws(WireError) {
            message = try RelayMessage(decoding: datagram, key: configuration.key)
        } catch .unauthenticated {
            counters.unauthenticated += 1
            return nil
        } catch {
            counters.malformed += 1
            return nil
        }
        switch message {
        case .allocate(let nonce, let tokenBytes):
            let token: RelayToken
            let nowSeconds = clock.unixSeconds
            do throws(WireError) {
                token = try tokenBytes.withBytes { raw throws(WireError) in try RelayToken(verifying: raw, key: configuration.key, nowSeconds: nowSeconds) }
            } catch .expired {
                counters.expiredTokens += 1
                return nil
            } catch .unauthenticated {
                counters.unauthenticated += 1
                logger.debug("allocation refused", metadata: ["from": "\(from)", "reason": "bad token"])
                return nil
            } catch {
                counters.malformed += 1
                return nil
            }
            // A token grants its side once: the same request again (a client resending until answered)
            // gets the same answer and changes nothing; another request with the token is a replay.
            let tag = Array(tokenBytes.suffix(Crypto.tagCount))
            let replyKey = Keys.relayReplyKey(relayKey: configuration.key, token: tokenBytes)
            let use: UsedTokens.Use
            if let used = usedTokens.use(of: tag) {
                guard used.nonce == nonce else {
                    counters.replayedTokens += 1
                    logger.debug("allocation refused", metadata: ["from": "\(from)", "reason": "token used"])
                    return nil
                }
                use = used
            } else {
                let (status, port) = allocate(token, bytes: tokenBytes, replyKey: replyKey)
                use = UsedTokens.Use(nonce: nonce, status: status, port: port)
                usedTokens.insert(use, tag: tag, expiresAt: token.expiresAt, nowSeconds: nowSeconds)
            }
            let idle = UInt16(clamping: configuration.idleTimeout.components.seconds)
            return RelayMessage.allocated(nonce: nonce, status: use.status, port: use.port, idleSeconds: idle).encoded(key: replyKey)
        case .loadQuery(let timestamp, let nonce):
            let now = clock.unixMillis
            switch loadQueryWindow.check(timestamp: timestamp, nonce: nonce, now: now) {
            case .fresh: break
            case .expired:
                counters.expiredTokens += 1
                return nil
            case .replayed:
                counters.replayedLoadQueries += 1
                return nil
            }
            counters.loadQueries += 1
            return RelayMessage.load(timestampMillis: now, nonce: nonce, allocations: UInt16(clamping: allocations.count),
                                     capacity: UInt16(clamping: configuration.capacity)).encoded(key: configuration.key)
        case .release(let nonce, let tokenBytes):
            // The message's tag (under the token's reply key) proves the member the token was issued to
            // sent it; the token may have expired since the grant.
            guard let token = try? tokenBytes.withBytes({ raw throws(WireError) in try RelayToken(verifying: raw, key: configuration.key, nowSeconds: 0) }) else {
                counters.unauthenticated += 1
                return nil
            }
            if let allocation = allocations[token.pairID], allocation.sides[Int(token.side)].token == tokenBytes {
                counters.releasedAllocations += 1
                release(token.pairID, allocation, reason: "released")
            }
            let replyKey = Keys.relayReplyKey(relayKey: configuration.key, token: tokenBytes)
            return RelayMessage.released(nonce: nonce).encoded(key: replyKey)
        case .allocated, .load, .released, .latch:
            counters.malformed += 1
            return nil
        }
    }

    /// Grants side `token.side` of the pair's allocation (creating the allocation on first use);
    /// `bytes` is the token as presented, which a release of this side must present again, and
    /// `replyKey` its reply key, which authenticates the side's latches.
    func allocate(_ token: RelayToken, bytes: [UInt8], replyKey: [UInt8]) -> (RelayMessage.AllocationStatus, UInt16) {
        let side = Int(token.side)
        guard let listen = configuration.listen.first(where: { $0.family == token.address.family }) else {
            counters.refusedFamily += 1
            return (.family, 0)
        }
        if let existing = allocations[token.pairID] {
            // The side's member now speaks the other family: its port moves to that family's address.
            if existing.addresses[side].family != listen.family {
                guard let handle = ports.open(existing.sides[side].port, on: listen, for: existing, side: side) else {
                    counters.refusedFull += 1
                    return (.full, 0)
                }
                existing.addresses[side] = listen
                existing.handles[side] = handle
            }
            if existing.sides[side].allowed == nil { counters.granted += 1 } else { counters.refreshed += 1 }
            existing.grant(side, address: token.address, token: bytes, replyKey: replyKey)
            existing.lastActivity = clock.now
            return (.granted, existing.sides[side].port)
        }
        guard (perParty[token.partyID] ?? 0) < configuration.maxPerParty else {
            counters.refusedPartyLimit += 1
            return (.partyLimit, 0)
        }
        let allocation = Allocation(pairID: token.pairID, partyID: token.partyID, address: listen, now: clock.now)
        var opened = 0
        while opened < 2, let port = freePorts.popLast() {
            // A port that cannot be bound stays out of the pool.
            allocation.sides[opened].port = port
            if let handle = ports.open(port, on: listen, for: allocation, side: opened) {
                allocation.handles[opened] = handle
                opened += 1
            }
        }
        guard opened == 2 else {
            if opened == 1 {
                ports.close(allocation.sides[0].port)
                freePorts.append(allocation.sides[0].port)
            }
            counters.refusedFull += 1
            return (.full, 0)
        }
        allocation.grant(side, address: token.address, token: bytes, replyKey: replyKey)
        allocations[token.pairID] = allocation
        perParty[token.partyID, default: 0] += 1
        counters.granted += 1
        logger.info("allocated", metadata: ["ports": "\(allocation.sides[0].port),\(allocation.sides[1].port)",
                                            "allocations": "\(allocations.count)"])
        return (.granted, allocation.sides[side].port)
    }

    // MARK: Forwarding

    /// A datagram on side `index`'s port of `allocation`, from the socket address `source`. A latch
    /// datagram latches the side and goes no further; any other datagram is sent on only when it
    /// comes from the side's latched endpoint (address and port), from the other side's port to the
    /// other side's latched endpoint, or held for the other side until it latches. Everything else
    /// is dropped: a neighbour sharing the member's public address gets nothing by sending here.
    /// Returns whether it was the side's activity (it keeps the allocation from expiring; the owner
    /// calls ``touch(_:)`` once per batch).
    public func received(_ datagram: UnsafeRawBufferPointer, from source: sockaddr_storage, on allocation: Allocation, side index: Int) -> Bool {
        let other = 1 - index
        if RelayMessage.looksLikeLatch(datagram) { return acceptLatch(datagram, allocation, index, from: source) }
        guard allocation.destinationLengths[index] > 0, Self.same(source, allocation.destinations[index]) else {
            allocation.sides[index].drops += 1
            return false
        }
        guard allocation.destinationLengths[other] > 0 else {
            // The other side has not latched yet: keep the latest small datagram for it.
            if datagram.count <= Allocation.heldLimit {
                if allocation.held[other] != nil { allocation.sides[index].drops += 1 }
                allocation.held[other] = (Array(datagram), clock.now)
            } else {
                allocation.sides[index].drops += 1
            }
            return true
        }
        allocation.send(datagram, to: other, through: ports)
        return true
    }

    /// Side activity on `allocation` now: it is not idle.
    public func touch(_ allocation: Allocation) { allocation.lastActivity = clock.now }

    /// A latch datagram on side `index`'s port, from `storage`. It latches the side at its source
    /// when it comes from the address the side's token names, is authenticated under one of the
    /// side's reply keys (known only to the relay and the member), names the side's port, and
    /// carries a counter above the last latch's: a replayed latch does nothing. Returns whether it
    /// was accepted (refusals are counted).
    private func acceptLatch(_ datagram: UnsafeRawBufferPointer, _ allocation: Allocation, _ index: Int, from storage: sockaddr_storage) -> Bool {
        let side = allocation.sides[index]
        let counter = side.latchKeys.lazy.compactMap { key -> UInt64? in
            guard case .latch(side.port, let counter) = try? RelayMessage(decoding: datagram, key: key) else { return nil }
            return counter
        }.first
        guard let allowed = side.allowed, Self.address(of: storage, matches: allowed), let counter, counter > side.latchCounter,
              let source = Endpoint(storage) else {
            allocation.sides[index].refusedLatches += 1
            return false
        }
        allocation.sides[index].latchCounter = counter
        if !Self.same(storage, allocation.destinations[index]) {
            let first = allocation.destinationLengths[index] == 0
            allocation.latch(index, source)
            if first { deliverHeld(allocation, to: index) }
        }
        return true
    }

    /// Sends side `index`, which has just latched, the datagram the other side sent it before, if it
    /// is recent. Only a latch latches a side: a WireGuard message the side sent before its latch was
    /// dropped here and reached nobody, so the held message (the peer's first handshake initiation)
    /// crosses no initiation of the side's own — two crossing would leave both sides waiting as
    /// responders for WireGuard's retry 5 s later. Counted as the other side's.
    private func deliverHeld(_ allocation: Allocation, to index: Int) {
        guard let held = allocation.held[index] else { return }
        allocation.held[index] = nil
        let sender = 1 - index
        guard clock.now - held.at <= Allocation.heldLifetime else {
            allocation.sides[sender].drops += 1
            return
        }
        held.bytes.withUnsafeBytes { allocation.send($0, to: index, through: ports) }
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
        for side in allocation.sides {
            ports.close(side.port)
            freePorts.append(side.port)
        }
        allocations[pair] = nil
        perParty[allocation.partyID, default: 1] -= 1
        if perParty[allocation.partyID] == 0 { perParty[allocation.partyID] = nil }
        logger.info(reason, metadata: Self.report(allocation))
    }

    /// One allocation's counters, per side (side 0, side 1).
    public static func report(_ allocation: Allocation) -> Logger.Metadata {
        let sides = allocation.sides
        func both(_ value: (RelaySide) -> String) -> Logger.Text { Logger.Text(value(sides[0]) + "," + value(sides[1])) }
        return [
            "ports": both { String($0.port) }, "latched": both { $0.latched?.description ?? "-" },
            "packets": both { String($0.packets) }, "bytes": both { String($0.bytes) },
            "drops": both { String($0.drops) }, "refused_latches": both { String($0.refusedLatches) },
        ]
    }

    /// One line of counters, for logs (SIGHUP and exit).
    public var summary: Logger.Metadata {
        let sides = allocations.values.flatMap { $0.sides }
        func total(_ value: (RelaySide) -> UInt64) -> Int { Int(clamping: sides.reduce(0) { $0 + value($1) }) }
        return Logger.counters([
            ("allocations", allocations.count), ("granted", counters.granted), ("refreshed", counters.refreshed),
            ("refused_full", counters.refusedFull), ("refused_party_limit", counters.refusedPartyLimit),
            ("refused_family", counters.refusedFamily),
            ("unauthenticated", counters.unauthenticated), ("expired_tokens", counters.expiredTokens),
            ("malformed", counters.malformed), ("rate_limited", counters.rateLimited),
            ("expired_allocations", counters.expiredAllocations), ("released_allocations", counters.releasedAllocations),
            ("replayed_tokens", counters.replayedTokens), ("replayed_load_queries", counters.replayedLoadQueries),
            ("forwarded_packets", total { $0.packets }), ("forwarded_bytes", total { $0.bytes }),
            ("dropped_packets", total { $0.drops }), ("refused_latches", total { $0.refusedLatches }),
        ])
    }
}
