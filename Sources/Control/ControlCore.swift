import Net
import Rendezvous
import STUN
import StateChart
import Time

/// The control server's logic, without sockets: a datagram in, datagrams out. Parties, the
/// registry with its pushes, heartbeats and expiry, punch coordination and relay offers.
///
/// Who may do what: a member is admitted only with a certificate signed by its party's authority,
/// and every message it sends is authenticated under its control key (X25519 of its WireGuard key
/// and the server's own), so nobody can register, heartbeat, leave or ask anything for another key;
/// the server's messages are authenticated the same way, so no member can speak as the server.
/// Known members are checked with one HMAC and limited by their own bucket, whatever strangers send;
/// a stranger costs an X25519 and a signature check, so under load strangers must first echo a cookie.
/// Every datagram that is not an authentic, fresh, well-formed message is dropped and counted.
public final class ControlCore {
    public struct Configuration: Sendable {
        public var heartbeat: Duration = .seconds(10)
        /// A member silent for this long is marked gone and its leave pushed to the others.
        public var memberTimeout: Duration = .seconds(30)
        /// A member offline for this long is removed from the registry (and the state file).
        public var forgetAfter: Duration = .seconds(7 * 86_400)
        /// How far in the future a coordinated punch starts (covers one-way delivery to both sides).
        public var punchLead: Duration = .milliseconds(100)
        /// How long after its start a punch still takes a side that asks (an attempt lasts 2.4 s).
        public var punchJoinWindow: Duration = .seconds(1)
        public var maxParties = 1024
        public var maxMembersPerParty = 256
        /// Messages per known member: average per second and burst.
        public var messagesPerSecond = 50.0
        public var messageBurst = 100.0
        /// Datagrams per source IP from unknown senders (registrations, other versions): average and burst.
        public var strangerPerSecond = 5.0
        public var strangerBurst = 10.0
        public var rateLimiterCapacity = 16_384
        /// Datagrams from unknown senders per second above which they must echo a cookie.
        public var cookieThreshold = 200
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
        public var badVersion = 0
        public var unknownParty = 0
        public var unauthenticated = 0
        public var replayed = 0
        public var expired = 0
        public var rateLimited = 0
        public var cookiesSent = 0
        public var refused = 0
        public var refusedCertificates = 0
        public var sent = 0
        public var registrations = 0
        public var expiredMembers = 0
        public var forgottenMembers = 0
        public var revokedMembers = 0

        public var dropped: Int { oversized + truncated + malformed + badVersion + unknownParty + unauthenticated + replayed + expired + rateLimited }
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
    /// The server's public key, which members pin.
    public let serverKey: MemberKey
    private let privateKey: [UInt8]
    public private(set) var parties: [UInt64: Party] = [:]
    public private(set) var counters = Counters()
    public var relays: [KnownRelay]
    let relayKey: [UInt8]?
    /// Members the administrator removed: refused whatever their certificate.
    public private(set) var revoked: Set<MemberKey> = []
    private var strangers: RateLimiter
    private var cookies: CookieJar
    /// Datagrams from unknown senders in the current second, and in the one before.
    private var strangerCount = (current: 0, previous: 0, second: Int64(0))
    /// Set when parties or members changed since the last save.
    public var dirty = false

    /// A core with the server's private key (X25519, 32 bytes: a WireGuard key, `lanrage genkey`).
    public init(configuration: Configuration = Configuration(), privateKey: [UInt8], relays: [Endpoint] = [], relayKey: [UInt8]? = nil,
                epoch: UInt64 = Crypto.randomUInt64(), now: Int64 = 0) {
        self.configuration = configuration
        self.epoch = epoch
        self.privateKey = privateKey
        serverKey = MemberKey(Crypto.publicKey(ofPrivate: privateKey))!
        self.relays = relays.map { KnownRelay(service: $0) }
        self.relayKey = relayKey
        strangers = RateLimiter(perSecond: configuration.strangerPerSecond, burst: configuration.strangerBurst,
                                capacity: configuration.rateLimiterCapacity)
        cookies = CookieJar(now: now)
    }

    // MARK: Parties

    /// Creates the party `name` with its authority (the Ed25519 public key that signs its
    /// certificates), or gives it a new authority: members whose certificate the new one did not
    /// sign are removed. Returns false when the table is full.
    @discardableResult
    public func addParty(name: String, authority: [UInt8], wall: UInt64 = 0) -> Bool {
        let id = Keys.partyID(name: name)
        if let existing = parties[id] {
            guard existing.authority != authority else { return true }
            existing.authority = authority
            for (key, member) in existing.members
            where (try? MemberCertificate.verified(member.record.certificate, authority: authority, party: id, member: key,
                                                    now: wall / 1000)) == nil {
                existing.members[key] = nil
            }
            existing.revision = existing.revision &+ 1
        } else {
            guard parties.count < configuration.maxParties else { return false }
            parties[id] = Party(name: name, authority: authority)
        }
        dirty = true
        return true
    }

    /// Restores a saved party (members offline until they speak; those whose certificate no longer
    /// verifies are left out).
    func restore(_ saved: StateStore.SavedParty, wall: UInt64) {
        let party = Party(name: saved.name, authority: saved.authority)
        party.revision = min(saved.revision, StateStore.revisionLimit) + 1
        for member in saved.members {
            guard let certificate = try? MemberCertificate.verified(member.record.certificate, authority: saved.authority, party: party.id,
                                                                     member: member.record.key, now: wall / 1000) else { continue }
            var record = member.record
            record.addresses = certificate.allowedPrefixes
            party.members[record.key] = Member(record: record, certificateExpiry: certificate.notAfter, lastSeen: member.lastSeen,
                                               burst: configuration.messageBurst, now: 0)
        }
        parties[party.id] = party
    }

    public func party(named name: String) -> Party? { parties[Keys.partyID(name: name)] }

    /// Sets the members the administrator removed: they leave every party at once (their leave is
    /// pushed) and are refused from then on.
    public func revoke(_ keys: Set<MemberKey>, wall: UInt64) -> [Outgoing] {
        revoked = keys
        var out: [Outgoing] = []
        for party in parties.values {
            for key in keys {
                guard let member = party.members.removeValue(forKey: key) else { continue }
                counters.revokedMembers += 1
                dirty = true
                party.revision = party.revision &+ 1
                if member.online { out += push(party, except: key, .member(event: .left, record: member.record, revision: party.revision), wall) }
            }
        }
        return out
    }

    // MARK: Datagrams

    /// Handles one datagram from `source`; `now` is monotonic nanoseconds, `wall` ms since 1970.
    public func handle(_ bytes: UnsafeRawBufferPointer, from source: Endpoint, now: Int64, wall: UInt64) -> [Outgoing] {
        counters.received += 1
        if bytes.count >= 4, bytes[0] == ControlMessage.magic.0, bytes[1] == ControlMessage.magic.1, bytes[2] != ControlMessage.version {
            // Another protocol version: say which this server speaks, so that its side can tell.
            counters.badVersion += 1
            guard bytes[3] != ControlNotice.versionType, strangers.allow(source.address, now: now) else { return [] }
            return [Outgoing(bytes: ControlNotice.version(lowest: ControlMessage.version, highest: ControlMessage.version).encoded(), to: source)]
        }
        let header: ControlMessage.Header
        do {
            header = try ControlMessage.header(of: bytes)
        } catch {
            count(error)
            return []
        }
        guard let party = parties[header.partyID] else { counters.unknownParty += 1; return [] }
        guard header.sender != serverKey else { counters.malformed += 1; return [] }
        if var member = party.members[header.sender], let key = member.controlKey {
            // A known member: one HMAC, its own bucket.
            guard let message = authenticate(bytes, key: key) else { return [] }
            guard member.bucket.take(now: now, perSecond: configuration.messagesPerSecond, burst: configuration.messageBurst) else {
                party.members[header.sender] = member
                counters.rateLimited += 1
                return []
            }
            party.members[header.sender] = member
            return accept(message, member: member, in: party, from: source, now: now, wall: wall)
        }
        return stranger(bytes, header, in: party, from: source, now: now, wall: wall)
    }

    /// A sender whose key the server has not derived yet: a new member registering, or a member the
    /// server restored (or forgot) speaking for the first time. Under load (more stranger datagrams a
    /// second than the threshold), a register must first carry the cookie of its source: one without
    /// gets the cookie, at the cost of a hash, unlimited (the answer is smaller than the register, and
    /// a per-address limit there would let a spoofed flood take a real newcomer's address's turn);
    /// anything else from a stranger is dropped. Then, and always when not under load, strangers are
    /// limited per source address before any X25519 or signature check is made.
    private func stranger(_ bytes: UnsafeRawBufferPointer, _ header: ControlMessage.Header, in party: Party, from source: Endpoint,
                          now: Int64, wall: UInt64) -> [Outgoing] {
        let second = now / 1_000_000_000
        if second != strangerCount.second {
            strangerCount = (0, second == strangerCount.second + 1 ? strangerCount.current : 0, second)
        }
        strangerCount.current += 1
        if party.members[header.sender] == nil && max(strangerCount.current, strangerCount.previous) > configuration.cookieThreshold {
            guard header.type == 0x01 else { counters.rateLimited += 1; return [] }
            let cookie = Array(UnsafeRawBufferPointer(rebasing: bytes[ControlMessage.headerCount..<(ControlMessage.headerCount + ControlNotice.cookieCount)]))
            guard cookies.isValid(cookie, for: source, now: now) else {
                counters.cookiesSent += 1
                return [Outgoing(bytes: ControlNotice.cookie(nonce: header.nonce, cookie: cookies.cookie(for: source, now: now)).encoded(), to: source)]
            }
        }
        guard strangers.allow(source.address, now: now) else { counters.rateLimited += 1; return [] }
        guard let key = Keys.controlKey(privateKey: privateKey, publicKey: header.sender.bytes, member: header.sender, server: serverKey,
                                        party: party.id),
              let message = authenticate(bytes, key: key) else { return [] }
        if var member = party.members[header.sender] {
            member.controlKey = key
            party.members[header.sender] = member
            return accept(message, member: member, in: party, from: source, now: now, wall: wall)
        }
        guard case .register(_, _, _, let bytes) = message.body else {
            return [reply(party, key, to: source, .refused(.registerAgain), wall)]
        }
        guard !revoked.contains(header.sender) else {
            counters.refused += 1
            return [reply(party, key, to: source, .refused(.revoked), wall)]
        }
        let certificate: MemberCertificate
        do {
            certificate = try MemberCertificate.verified(bytes, authority: party.authority, party: party.id, member: header.sender, now: wall / 1000)
        } catch {
            counters.refusedCertificates += 1
            return [reply(party, key, to: source, .refused(.certificateRefused), wall)]
        }
        guard party.members.count < configuration.maxMembersPerParty else {
            counters.refused += 1
            return [reply(party, key, to: source, .refused(.partyFull), wall)]
        }
        var member = Member(record: MemberRecord(key: header.sender, nat: .unknown, candidates: [], certificate: bytes,
                                                 addresses: certificate.allowedPrefixes),
                            certificateExpiry: certificate.notAfter, lastSeen: wall / 1000, burst: configuration.messageBurst, now: now)
        member.controlKey = key
        return accept(message, member: member, in: party, from: source, now: now, wall: wall)
    }

    /// The message under `key`, or nil (counted) when it is not authentic or not well formed.
    private func authenticate(_ bytes: UnsafeRawBufferPointer, key: [UInt8]) -> ControlMessage? {
        do {
            return try ControlMessage(authenticating: bytes, key: key)
        } catch {
            count(error)
            return nil
        }
    }

    /// An authentic message of `member`: checked against replay, then acted on.
    private func accept(_ message: ControlMessage, member: Member, in party: Party, from source: Endpoint, now: Int64,
                        wall: UInt64) -> [Outgoing] {
        var member = member
        switch member.replay.check(timestamp: message.timestampMillis, nonce: message.nonce, now: wall) {
        case .fresh: break
        case .replayed: counters.replayed += 1; party.members[message.sender] = member; return []
        case .expired:
            counters.expired += 1
            // A member whose clock is off would register unanswered forever: tell it, once per
            // register (each one already passed the sender's rate limit and an HMAC).
            guard case .register = message.body, let key = member.controlKey else { return [] }
            return [reply(party, key, to: source, .refused(.clockSkew), wall)]
        }
        counters.accepted += 1
        member.lastSeen = wall / 1000
        party.members[message.sender] = member
        return dispatch(message, in: party, from: source, now: now, wall: wall)
    }

    private func count(_ error: WireError) {
        switch error {
        case .oversized: counters.oversized += 1
        case .truncated: counters.truncated += 1
        case .badVersion: counters.badVersion += 1
        case .unauthenticated: counters.unauthenticated += 1
        case .replayed: counters.replayed += 1
        case .expired: counters.expired += 1
        default: counters.malformed += 1
        }
    }

    private func dispatch(_ message: ControlMessage, in party: Party, from source: Endpoint, now: Int64, wall: UInt64) -> [Outgoing] {
        let key = message.sender
        guard var member = party.members[key], let controlKey = member.controlKey else { return [] }
        var out: [Outgoing] = []
        switch message.body {
        case .register(_, let nat, let candidates, let certificateBytes):
            let previous = member.record
            // A member already known may bring a renewed certificate; it must verify like the first.
            if certificateBytes != member.record.certificate {
                guard let certificate = try? MemberCertificate.verified(certificateBytes, authority: party.authority, party: party.id,
                                                                         member: key, now: wall / 1000) else {
                    counters.refusedCertificates += 1
                    return [reply(party, controlKey, to: source, .refused(.certificateRefused), wall)]
                }
                member.record.certificate = certificateBytes
                member.record.addresses = certificate.allowedPrefixes
                member.certificateExpiry = certificate.notAfter
            }
            counters.registrations += 1
            let wasOnline = member.online
            var record = MemberRecord(key: key, nat: nat, candidates: Array(candidates.filter { $0.kind != .observed }
                .prefix(MemberRecord.maxCandidates - 1)), certificate: member.record.certificate, addresses: member.record.addresses)
            record.candidates.append(Candidate(.observed, source))
            let changed = record != previous || !wasOnline
            member.record = record
            member.online = true
            member.source = source
            member.lastHeard = now
            party.members[key] = member
            if changed {
                party.revision = party.revision &+ 1
                dirty = true
                out += push(party, except: key, .member(event: wasOnline ? .updated : .joined, record: record, revision: party.revision), wall)
            }
            let others = party.members.values.filter { $0.online && $0.record.key != key }
            out.append(reply(party, controlKey, to: source, .registered(epoch: epoch, revision: party.revision,
                                                                       heartbeatSeconds: UInt16(clamping: configuration.heartbeat.components.seconds),
                                                                       observed: source, others: UInt16(clamping: others.count)), wall))
            for other in others {
                out.append(reply(party, controlKey, to: source, .member(event: .present, record: other.record, revision: party.revision), wall))
            }
        case .heartbeat:
            guard member.online else { return [reply(party, controlKey, to: source, .refused(.registerAgain), wall)] }
            member.lastHeard = now
            if member.source != source {
                // A new public endpoint (NAT rebinding): update the observed candidate and tell the others.
                member.source = source
                member.record.candidates.removeAll { $0.kind == .observed }
                member.record.candidates.append(Candidate(.observed, source))
                party.revision = party.revision &+ 1
                dirty = true
                out += push(party, except: key, .member(event: .updated, record: member.record, revision: party.revision), wall)
            }
            party.members[key] = member
            out.append(reply(party, controlKey, to: source, .heartbeatAck(epoch: epoch, revision: party.revision), wall))
        case .leave:
            guard member.online else { return [] }
            member.online = false
            party.members[key] = member
            party.revision = party.revision &+ 1
            dirty = true
            out += push(party, except: key, .member(event: .left, record: member.record, revision: party.revision), wall)
        case .punchRequest(let target):
            guard member.online, let peer = party.members[target], peer.online, target != key, let peerKey = peer.controlKey,
                  let peerSource = peer.source else {
                counters.refused += 1
                return [reply(party, controlKey, to: source, .refused(.peerUnknown), wall)]
            }
            let start = punchStart(party, key, target, wall: wall)
            out.append(reply(party, controlKey, to: source, .punch(peer: peer.record.withoutCertificate, startMillis: start), wall))
            out.append(reply(party, peerKey, to: peerSource, .punch(peer: member.record.withoutCertificate, startMillis: start), wall))
        case .relayRequest(let target):
            guard member.online, let peer = party.members[target], peer.online, target != key, let peerKey = peer.controlKey,
                  let mySource = member.source, let peerSource = peer.source else {
                counters.refused += 1
                return [reply(party, controlKey, to: source, .refused(.peerUnknown), wall)]
            }
            guard let relayKey, !relays.isEmpty else {
                counters.refused += 1
                return [reply(party, controlKey, to: source, .refused(.noRelay), wall)]
            }
            let pair = Keys.pairID(party: party.id, key, target)
            let expiry = wall / 1000 + UInt64(configuration.tokenLifetime.components.seconds)
            // Members speaking two families are offered relays in the order given: each side's offers
            // are its own family's endpoints, and loads measured per endpoint could order one relay's
            // two endpoints differently on each side (the sides would then allocate on two relays).
            let oneFamily = mySource.address.family == peerSource.address.family
            func offers(side: UInt8, address: IPAddress, for recipientKey: [UInt8]) -> [RelayOffer] {
                // Relays of the family the member speaks to this server (the token names that address,
                // and the relay takes the member's latch only from it); for a pair of one family, those
                // that answer their load queries first, least loaded first; silent ones last.
                let usable = relays.filter { $0.service.address.family == address.family }
                let ordered = !oneFamily ? usable
                    : usable.sorted { ($0.isAlive(at: wall) ? 0 : 1, $0.load) < ($1.isAlive(at: wall) ? 0 : 1, $1.load) }
                return ordered.prefix(RelayOffer.maxCount).map { relay in
                        let token = RelayToken(side: side, address: address, expiresAt: expiry, partyID: party.id, pairID: pair)
                        let bytes = token.encoded(key: relayKey)
                        // The reply key travels masked: only its member can unmask it.
                        let mask = Keys.replyKeyMask(controlKey: recipientKey, token: bytes)
                        let masked = zip(Keys.relayReplyKey(relayKey: relayKey, token: bytes), mask).map { $0 ^ $1 }
                        return RelayOffer(service: relay.service, allocations: relay.allocations, capacity: relay.capacity,
                                          token: bytes, replyKey: masked)
                    }
            }
            let mySide: UInt8 = key < target ? 0 : 1
            out.append(reply(party, controlKey, to: mySource,
                             .relays(peer: target, offers: offers(side: mySide, address: mySource.address, for: controlKey)), wall))
            out.append(reply(party, peerKey, to: peerSource,
                             .relays(peer: key, offers: offers(side: 1 - mySide, address: peerSource.address, for: peerKey)), wall))
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

    /// A message from the server, under the control key of the member it is for.
    private func reply(_ party: Party, _ key: [UInt8], to destination: Endpoint, _ body: ControlMessage.Body, _ wall: UInt64) -> Outgoing {
        counters.sent += 1
        let message = ControlMessage(partyID: party.id, timestampMillis: wall, nonce: Crypto.randomUInt64(), sender: serverKey, body: body)
        return Outgoing(bytes: message.encoded(key: key), to: destination)
    }

    private func push(_ party: Party, except key: MemberKey, _ body: ControlMessage.Body, _ wall: UInt64) -> [Outgoing] {
        party.members.values.compactMap { member in
            guard member.online, member.record.key != key, let source = member.source, let controlKey = member.controlKey else { return nil }
            return reply(party, controlKey, to: source, body, wall)
        }
    }

    // MARK: Expiry and relays

    /// Marks members silent for longer than the member timeout, or whose certificate expired, as
    /// gone (their leave is pushed), and removes members offline for longer than the forget time.
    public func expireSilent(now: Int64, wall: UInt64) -> [Outgoing] {
        let limit = now - configuration.memberTimeout.nanoseconds
        let seconds = wall / 1000
        let forget = UInt64(configuration.forgetAfter.components.seconds)
        var out: [Outgoing] = []
        for party in parties.values {
            for (key, member) in party.members {
                if member.online && (member.lastHeard < limit || member.certificateExpiry < seconds) {
                    party.members[key]!.online = false
                    party.revision = party.revision &+ 1
                    counters.expiredMembers += 1
                    dirty = true
                    out += push(party, except: key, .member(event: .left, record: member.record, revision: party.revision), wall)
                } else if !member.online && (seconds > member.lastSeen && seconds - member.lastSeen > forget || member.certificateExpiry < seconds) {
                    party.members[key] = nil
                    counters.forgottenMembers += 1
                    dirty = true
                }
            }
        }
        return out
    }

    /// Replaces the relays offered by `services` (a relay given by name moved, or got its first
    /// address); a relay kept keeps its reported load.
    public func updateRelays(_ services: [Endpoint]) {
        relays = services.map { service in relays.first { $0.service == service } ?? KnownRelay(service: service) }
    }

    /// The relays that did not answer the last three load queries, at `wall`.
    public func silentRelays(at wall: UInt64) -> [Endpoint] {
        relays.filter { !$0.isAlive(at: wall) }.map { $0.service }
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
