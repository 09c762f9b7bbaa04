import Net
import Rendezvous

/// The control server's logic, without sockets: a datagram in, datagrams out. Parties, the
/// registry with its pushes, heartbeats and expiry, punch coordination and relay offers.
/// Every datagram that is not an authentic, fresh, well-formed member message is dropped and counted.
public final class ControlCore {
    public struct Configuration: Sendable {
        public var heartbeat: Duration = .seconds(10)
        /// A member silent for this long is marked gone and its leave pushed to the others.
        public var memberTimeout: Duration = .seconds(30)
        /// How far in the future a coordinated punch starts (covers one-way delivery to both sides).
        public var punchLead: Duration = .milliseconds(100)
        /// How long after its start a punch still takes a side that asks (an attempt lasts 2.4 s).
        public var punchJoinWindow: Duration = .seconds(1)
        public var maxParties = 1024
        public var maxMembersPerParty = 256
        /// Messages per source IP: average per second and burst.
        public var messagesPerSecond = 50.0
        public var messageBurst = 100.0
        public var rateLimiterCapacity = 16_384
        /// How long relay tokens stay valid for the allocation request.
        public var tokenLifetime: Duration = .seconds(120)

        public init() {}
    }

    /// What the server dropped and did, by reason.
    public struct Counters: Sendable, Equatable {
        public var received = 0
        public var accepted = 0
        public var oversized = 0
        public var truncated = 0
        public var malformed = 0
        public var unknownParty = 0
        public var unauthenticated = 0
        public var replayed = 0
        public var expired = 0
        public var rateLimited = 0
        public var refused = 0
        public var sent = 0
        public var registrations = 0
        public var expiredMembers = 0

        public var dropped: Int { oversized + truncated + malformed + unknownParty + unauthenticated + replayed + expired + rateLimited }
    }

    /// A datagram to send.
    public struct Outgoing: Sendable, Equatable {
        public var bytes: [UInt8]
        public var to: Endpoint
    }

    /// A relay the server offers, with its last reported load.
    public struct KnownRelay: Sendable {
        public var service: Endpoint
        public var allocations: UInt16 = 0
        public var capacity: UInt16 = 0
        public var reported = false
        /// When it last answered a load query (wall ms).
        public var heardAtMillis: UInt64 = 0

        /// Answered within the last three load queries (they go out every 5 s).
        func isAlive(at wall: UInt64) -> Bool { wall < heardAtMillis + 15_000 }

        var load: Double { Double(allocations) / Double(max(1, capacity)) }
    }

    public let configuration: Configuration
    public let epoch: UInt64
    public private(set) var parties: [UInt64: Party] = [:]
    public private(set) var counters = Counters()
    public var relays: [KnownRelay]
    let relayKey: [UInt8]?
    private var limiter: RateLimiter
    /// Set when parties or members changed since the last save.
    public var dirty = false

    public init(configuration: Configuration = Configuration(), relays: [Endpoint] = [], relayKey: [UInt8]? = nil,
                epoch: UInt64 = Crypto.randomUInt64()) {
        self.configuration = configuration
        self.epoch = epoch
        self.relays = relays.map { KnownRelay(service: $0) }
        self.relayKey = relayKey
        limiter = RateLimiter(perSecond: configuration.messagesPerSecond, burst: configuration.messageBurst,
                              capacity: configuration.rateLimiterCapacity)
    }

    // MARK: Parties

    /// Creates the party `name` with `secret`, or changes its secret. Returns false when the table is full.
    @discardableResult
    public func addParty(name: String, secret: [UInt8]) -> Bool {
        let party = Party(name: name, key: Keys.partyKey(name: name, secret: secret))
        if let existing = parties[party.id] {
            guard existing.key != party.key else { return true }
            party.members = existing.members
            party.revision = existing.revision + 1
        } else if parties.count >= configuration.maxParties {
            return false
        }
        parties[party.id] = party
        dirty = true
        return true
    }

    /// Restores a party from saved state (key already derived; members offline until they speak).
    func restore(name: String, key: [UInt8], revision: UInt64, members: [MemberRecord]) {
        let party = Party(name: name, key: key)
        party.revision = revision + 1
        for record in members { party.members[record.key] = Member(record: record) }
        parties[party.id] = party
    }

    public func party(named name: String) -> Party? { parties[Keys.partyID(name: name)] }

    // MARK: Datagrams

    /// Handles one datagram from `source`; `now` is monotonic nanoseconds, `wall` ms since 1970.
    public func handle(_ bytes: UnsafeRawBufferPointer, from source: Endpoint, now: Int64, wall: UInt64) -> [Outgoing] {
        counters.received += 1
        guard limiter.allow(source.address, now: now) else { counters.rateLimited += 1; return [] }
        let header: ControlMessage.Header
        do {
            header = try ControlMessage.header(of: bytes)
        } catch {
            count(error)
            return []
        }
        guard let party = parties[header.partyID] else { counters.unknownParty += 1; return [] }
        let message: ControlMessage
        do {
            message = try ControlMessage(authenticating: bytes, key: party.key)
        } catch {
            count(error)
            return []
        }
        guard message.sender != MemberKey.server else { counters.malformed += 1; return [] }
        var member = party.members[message.sender]
        if member == nil {
            guard case .register = message.body else { return [reply(party, to: source, .refused(.registerAgain), wall)] }
            guard party.members.count < configuration.maxMembersPerParty else {
                counters.refused += 1
                return [reply(party, to: source, .refused(.partyFull), wall)]
            }
            member = Member(record: MemberRecord(key: message.sender, nat: .unknown, candidates: []))
        }
        switch member!.replay.check(timestamp: message.timestampMillis, nonce: message.nonce, now: wall) {
        case .fresh: break
        case .replayed: counters.replayed += 1; party.members[message.sender] = member; return []
        case .expired: counters.expired += 1; return []
        }
        counters.accepted += 1
        party.members[message.sender] = member
        return dispatch(message, in: party, from: source, now: now, wall: wall)
    }

    private func count(_ error: WireError) {
        switch error {
        case .oversized: counters.oversized += 1
        case .truncated: counters.truncated += 1
        case .unauthenticated: counters.unauthenticated += 1
        case .replayed: counters.replayed += 1
        case .expired: counters.expired += 1
        default: counters.malformed += 1
        }
    }

    private func dispatch(_ message: ControlMessage, in party: Party, from source: Endpoint, now: Int64, wall: UInt64) -> [Outgoing] {
        let key = message.sender
        var out: [Outgoing] = []
        switch message.body {
        case .register(let nat, let candidates, let addresses):
            counters.registrations += 1
            var member = party.members[key]!
            let wasOnline = member.online
            var record = MemberRecord(key: key, nat: nat, candidates: Array(candidates.filter { $0.kind != .observed }
                .prefix(MemberRecord.maxCandidates - 1)), addresses: addresses)
            record.candidates.append(Candidate(.observed, source))
            let changed = record != member.record || !wasOnline
            member.record = record
            member.online = true
            member.source = source
            member.lastHeard = now
            party.members[key] = member
            if changed {
                party.revision += 1
                dirty = true
                out += push(party, except: key, .member(event: wasOnline ? .updated : .joined, record: record, revision: party.revision), wall)
            }
            let others = party.members.values.filter { $0.online && $0.record.key != key }
            out.append(reply(party, to: source, .registered(epoch: epoch, revision: party.revision,
                                                           heartbeatSeconds: UInt16(clamping: configuration.heartbeat.components.seconds),
                                                           observed: source, others: UInt16(clamping: others.count)), wall))
            for other in others {
                out.append(reply(party, to: source, .member(event: .present, record: other.record, revision: party.revision), wall))
            }
        case .heartbeat:
            guard var member = party.members[key], member.online else {
                return [reply(party, to: source, .refused(.registerAgain), wall)]
            }
            member.lastHeard = now
            if member.source != source {
                // A new public endpoint (NAT rebinding): update the observed candidate and tell the others.
                member.source = source
                member.record.candidates.removeAll { $0.kind == .observed }
                member.record.candidates.append(Candidate(.observed, source))
                party.revision += 1
                dirty = true
                out += push(party, except: key, .member(event: .updated, record: member.record, revision: party.revision), wall)
            }
            party.members[key] = member
            out.append(reply(party, to: source, .heartbeatAck(epoch: epoch, revision: party.revision), wall))
        case .leave:
            guard var member = party.members[key], member.online else { return [] }
            member.online = false
            party.members[key] = member
            party.revision += 1
            dirty = true
            out += push(party, except: key, .member(event: .left, record: member.record, revision: party.revision), wall)
        case .punchRequest(let target):
            guard let me = party.members[key], me.online, let peer = party.members[target], peer.online, target != key,
                  let peerSource = peer.source else {
                counters.refused += 1
                return [reply(party, to: source, .refused(.peerUnknown), wall)]
            }
            let start = punchStart(party, key, target, wall: wall)
            out.append(reply(party, to: source, .punch(peer: peer.record, startMillis: start), wall))
            out.append(reply(party, to: peerSource, .punch(peer: me.record, startMillis: start), wall))
        case .relayRequest(let target):
            guard let me = party.members[key], me.online, let peer = party.members[target], peer.online, target != key,
                  let mySource = me.source, let peerSource = peer.source else {
                counters.refused += 1
                return [reply(party, to: source, .refused(.peerUnknown), wall)]
            }
            guard let relayKey, !relays.isEmpty else {
                counters.refused += 1
                return [reply(party, to: source, .refused(.noRelay), wall)]
            }
            let pair = Keys.pairID(party: party.id, key, target)
            let expiry = wall / 1000 + UInt64(configuration.tokenLifetime.components.seconds)
            func offers(side: UInt8, address: IPAddress) -> [RelayOffer] {
                // Relays that answer their load queries first, least loaded first; silent ones last.
                relays.sorted { ($0.isAlive(at: wall) ? 0 : 1, $0.load) < ($1.isAlive(at: wall) ? 0 : 1, $1.load) }
                    .prefix(RelayOffer.maxCount).map { relay in
                        let token = RelayToken(side: side, address: address, expiresAt: expiry, partyID: party.id, pairID: pair)
                        let bytes = token.encoded(key: relayKey)
                        return RelayOffer(service: relay.service, allocations: relay.allocations, capacity: relay.capacity,
                                          token: bytes, replyKey: Keys.relayReplyKey(relayKey: relayKey, token: bytes))
                    }
            }
            let mySide: UInt8 = key < target ? 0 : 1
            out.append(reply(party, to: mySource, .relays(peer: target, offers: offers(side: mySide, address: mySource.address)), wall))
            out.append(reply(party, to: peerSource, .relays(peer: key, offers: offers(side: 1 - mySide, address: peerSource.address)), wall))
        default:
            counters.malformed += 1
        }
        return out
    }

    /// When the pair's punch starts. Both sides ask at the start of their own attempts, often within
    /// a few milliseconds of each other: a request made at most `punchJoinWindow` after the start of
    /// the pair's last punch gets that punch again (its start is its session), so the two sides
    /// punch in one session. Two announcements 70 ms apart put the sides in different sessions
    /// before: each answered only its own, and the pair fell back to a relay. Entries older than the
    /// window are dropped as new ones come (at most one per pair of online members).
    private func punchStart(_ party: Party, _ one: MemberKey, _ other: MemberKey, wall: UInt64) -> UInt64 {
        let window = UInt64(configuration.punchJoinWindow.nanoseconds / 1_000_000)
        let pair = PunchPair(one, other)
        if let start = party.punches[pair], wall <= start + window { return start }
        if party.punches.count >= party.members.count {
            party.punches = party.punches.filter { wall <= $0.value + window }
        }
        let start = wall + UInt64(configuration.punchLead.nanoseconds / 1_000_000)
        party.punches[pair] = start
        return start
    }

    private func reply(_ party: Party, to destination: Endpoint, _ body: ControlMessage.Body, _ wall: UInt64) -> Outgoing {
        counters.sent += 1
        let message = ControlMessage(partyID: party.id, timestampMillis: wall, nonce: Crypto.randomUInt64(),
                                     sender: .server, body: body)
        return Outgoing(bytes: message.encoded(key: party.key), to: destination)
    }

    private func push(_ party: Party, except key: MemberKey, _ body: ControlMessage.Body, _ wall: UInt64) -> [Outgoing] {
        party.members.values.compactMap { member in
            guard member.online, member.record.key != key, let source = member.source else { return nil }
            return reply(party, to: source, body, wall)
        }
    }

    // MARK: Expiry and relays

    /// Marks members silent for longer than the member timeout as gone and pushes their leave.
    public func expireSilent(now: Int64, wall: UInt64) -> [Outgoing] {
        let limit = now - configuration.memberTimeout.nanoseconds
        var out: [Outgoing] = []
        for party in parties.values {
            for (key, member) in party.members where member.online && member.lastHeard < limit {
                party.members[key]!.online = false
                party.revision += 1
                counters.expiredMembers += 1
                out += push(party, except: key, .member(event: .left, record: member.record, revision: party.revision), wall)
            }
        }
        return out
    }

    /// The load queries to send to every known relay.
    public func loadQueries(wall: UInt64) -> [Outgoing] {
        guard let relayKey else { return [] }
        return relays.map { Outgoing(bytes: RelayMessage.loadQuery(timestampMillis: wall, nonce: Crypto.randomUInt64()).encoded(key: relayKey),
                                     to: $0.service) }
    }

    /// Handles a relay's answer (an `LR` datagram arriving on the control port).
    public func handleRelayDatagram(_ bytes: UnsafeRawBufferPointer, from source: Endpoint, wall: UInt64) {
        guard let index = relays.firstIndex(where: { $0.service == source }),
              let message = try? RelayMessage(decoding: bytes, key: relayKey),
              case .load(let timestamp, _, let allocations, let capacity) = message,
              (timestamp > wall ? timestamp - wall : wall - timestamp) <= ReplayWindow.skewMillis else {
            counters.unauthenticated += 1
            return
        }
        relays[index].allocations = allocations
        relays[index].capacity = capacity
        relays[index].reported = true
        relays[index].heardAtMillis = wall
    }
}
