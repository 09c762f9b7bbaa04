import CLinux
import EventLoop
import Output
import Net
import Rendezvous
import StateChart
import Time
import STUN

/// A member's connection to a control server: registers its candidates and certificate, keeps the
/// registry's view of the party up to date from the pushes, asks for punches and relays. Every
/// message both ways is authenticated under the member's control key (X25519 of its WireGuard key
/// and the server's pinned key); the members the server introduces are taken only with a
/// certificate signed by the party's authority, and only the prefixes it grants. Its states are the
/// ``RegistrationChart``, run by a ``Scheduler``; its socket and timers are an event loop's (or a
/// simulation's).
public final class ControlClient {
    public struct Configuration: Sendable {
        public var server: Endpoint
        /// The control server's public key (X25519), pinned: only it can speak as the server.
        public var serverKey: MemberKey
        public var party: String
        /// The party's authority (Ed25519 public key): it signed every member's certificate.
        public var authority: [UInt8]
        public var key: MemberKey
        /// This member's certificate, as signed.
        public var certificate: [UInt8]
        public var nat: NATType = .unknown
        public var candidates: [Candidate] = []

        public init(server: Endpoint, serverKey: MemberKey, party: String, authority: [UInt8], key: MemberKey, certificate: [UInt8]) {
            self.server = server
            self.serverKey = serverKey
            self.party = party
            self.authority = authority
            self.key = key
            self.certificate = certificate
        }
    }

    public var configuration: Configuration
    /// The socket toward the server, of the server's address family.
    public private(set) var socket: any PortSocket
    /// The other members, with verified certificates (their `addresses` are what those grant).
    public private(set) var members: [MemberKey: MemberRecord] = [:]
    public private(set) var observed: Endpoint?
    public private(set) var epoch: UInt64?
    public private(set) var revision: UInt64 = 0
    /// Messages from the server dropped (unauthentic, replayed, malformed).
    public private(set) var dropped = 0
    /// Members dropped because their certificate did not verify.
    public private(set) var refusedCertificates = 0
    /// Times the client got registered (the first time and after every reconnect).
    public private(set) var registrations = 0
    /// Registers sent while registered (new candidates, a missed change) that the server answered.
    public private(set) var updates = 0
    /// The protocol versions the server said it speaks, when they do not include this one.
    public private(set) var serverVersions: (lowest: UInt8, highest: UInt8)?
    public var onPunch: ((MemberRecord, UInt64) -> Void)?
    public var onRelays: ((MemberKey, [RelayOffer]) -> Void)?
    public var onChange: ((ControlMessage.MemberEvent, MemberRecord) -> Void)?
    public var onRefused: ((ControlMessage.Refusal) -> Void)?
    /// A member the server introduced was dropped: its certificate did not verify (why).
    public var onBadCertificate: ((MemberKey, MemberCertificate.Problem) -> Void)?
    /// The server speaks other protocol versions (lowest, highest).
    public var onVersionMismatch: ((UInt8, UInt8) -> Void)?
    /// A round of register messages went unanswered and the client backs off: the count of such
    /// rounds since the last registration.
    public var onUnanswered: ((Int) -> Void)?
    /// The client got registered (the first time, or again after a reconnect).
    public var onRegistered: (() -> Void)?
    /// The server's clock and this one differ by more than the replay window: the server's time
    /// minus this clock's, in milliseconds, from an authentic server message outside the window
    /// (or the server's `clockSkew` refusal).
    public var onClockSkew: ((Int64) -> Void)?

    let partyID: UInt64
    private let controlKey: [UInt8]
    private var replay = ReplayWindow()
    /// The cookie the server last gave (under load it asks strangers to echo one), and the nonce of
    /// the last register sent (a cookie answers that one).
    private var cookie = [UInt8](repeating: 0, count: ControlNotice.cookieCount)
    private var registerNonce: UInt64 = 0
    private let clock: any TimeSource
    /// The view of the party: the members presented with each revision (their records may
    /// overtake the `registered` answer: datagrams reorder), and how many the last answer announced
    /// (`nil` until one comes). Records of one revision are one view whichever answer brought them:
    /// a view asked for again completes with what the earlier answers brought. The view is complete
    /// once all have come; until then it is asked for again a second after each answer. At most a
    /// party's worth of keys.
    private var presented: [MemberKey: UInt64] = [:]
    private var announcedOthers: Int?
    /// The revision of the last answer's view (pushes move ``revision`` on).
    private var viewRevision: UInt64 = 0
    static let presentedLimit = 1024
    /// The members known before the last `registered` answer of the same server epoch, until its
    /// view is complete: those it does not bring left meanwhile (their `left` push was lost).
    private var earlier: [MemberKey: MemberRecord] = [:]
    /// The registration machine's scheduler: its timers are the client's (an event loop or a
    /// simulation fires them).
    public private(set) var scheduler: Scheduler<Executor>!
    private var machine = MachineID(0)

    public final class Executor: ActionExecutor {
        public typealias Spec = RegistrationChart
        unowned(unsafe) var client: ControlClient?
        public func execute(_ action: RegistrationAction, for id: MachineID) { client?.execute(action) }
    }

    /// A client for the member whose WireGuard private key is `privateKey`, speaking over `socket`:
    /// its owner calls ``readable()`` when the socket has datagrams and fires the ``scheduler``'s
    /// timers. Fails when the server's key is a low-order point (no key can be derived).
    public init(_ configuration: Configuration, privateKey: [UInt8], socket: any PortSocket, clock: any TimeSource,
                logger: Logger = Logger(label: "lanrage.control-client")) throws(SystemError) {
        self.configuration = configuration
        self.clock = clock
        partyID = Keys.partyID(name: configuration.party)
        guard let controlKey = Keys.controlKey(privateKey: privateKey, publicKey: configuration.serverKey.bytes, member: configuration.key,
                                               server: configuration.serverKey, party: partyID) else {
            throw SystemError("derive the control key from", "the control server's key \(configuration.serverKey) (not a usable public key)",
                              errno: EINVAL)
        }
        self.controlKey = controlKey
        self.socket = socket
        let executor = Executor()
        scheduler = Scheduler(chart: RegistrationChart.chart, clock: clock, executor: executor, logger: logger)
        executor.client = self
    }

    /// A client on a UDP socket of its own, bound to `local` (by default any address of the
    /// server's family), run by `loop`. Fails when the socket cannot be opened, or as above.
    public convenience init(_ configuration: Configuration, privateKey: [UInt8], loop: EventLoop, clock: any TimeSource = SystemClock(),
                            local: Endpoint? = nil, logger: Logger = Logger(label: "lanrage.control-client")) throws(SystemError) {
        let socket = try Self.socket(binding: local ?? Endpoint(.unspecified(configuration.server.address.family), 0))
        try self.init(configuration, privateKey: privateKey, socket: socket, clock: clock, logger: logger)
        try loop.register(socket.descriptor) { [unowned(unsafe) self] in self.readable() }
        loop.addTimers(scheduler)
        self.loop = loop
    }

    /// The loop that runs a client on its own UDP socket (it registers a replacement socket).
    private unowned(unsafe) var loop: EventLoop?

    private static func socket(binding local: Endpoint) throws(SystemError) -> UDPSocket {
        let socket = try UDPSocket(binding: local)
        // A resync brings every member's record at once: room for a party of hundreds.
        socket.enlargeBuffers(to: 1 << 20)
        return socket
    }

    /// Speaks to the server at `server` from now on (its name moved). A client on its own UDP
    /// socket gets a new socket when the server's address family is another.
    public func moveServer(to server: Endpoint) throws(SystemError) {
        if let loop, server.address.family != configuration.server.address.family {
            let replacement = try Self.socket(binding: Endpoint(.unspecified(server.address.family), 0))
            try loop.register(replacement.descriptor) { [unowned(unsafe) self] in self.readable() }
            loop.unregister(socket.descriptor)
            socket = replacement
        }
        configuration.server = server
    }

    /// The registration machine's state.
    public var state: RegistrationState { scheduler.machine(machine)?.state ?? .idle }

    public func start() {
        machine = scheduler.add(name: "\(configuration.key)", context: RegistrationContext())
        scheduler.post(.start, to: machine)
    }

    public func stop() { scheduler.post(.stop, to: machine) }

    /// Sends new candidates (e.g. after a new STUN result): at once when registered, and again in
    /// place of each heartbeat until the server answers; otherwise with the next register.
    public func update(nat: NATType, candidates: [Candidate]) {
        configuration.nat = nat
        configuration.candidates = candidates
        if state == .registered { scheduler.post(.update, to: machine) }
    }

    public func requestPunch(with peer: MemberKey) { send(.punchRequest(target: peer)) }
    public func requestRelay(with peer: MemberKey) { send(.relayRequest(target: peer)) }

    func execute(_ action: RegistrationAction) {
        switch action {
        case .sendRegister: sendRegister()
        case .sendHeartbeat: send(.heartbeat(revision: revision))
        case .sendLeave: send(.leave)
        case .reportRegistered:
            registrations += 1
            onRegistered?()
        case .reportUpdated: updates += 1
        case .reportDisconnected: onUnanswered?(scheduler.machine(machine)?.context.failures ?? 0)
        }
    }

    private func sendRegister() {
        registerNonce = send(.register(cookie: cookie, nat: configuration.nat, candidates: configuration.candidates,
                                       certificate: configuration.certificate))
    }

    /// Sends `body` to the server; returns the message's nonce.
    @discardableResult
    func send(_ body: ControlMessage.Body) -> UInt64 {
        let message = ControlMessage(partyID: partyID, timestampMillis: clock.unixMillis, nonce: Crypto.randomUInt64(),
                                     sender: configuration.key, body: body)
        _ = try? socket.send(message.encoded(key: controlKey), to: configuration.server)
        return message.nonce
    }

    /// Handles the datagrams the socket holds, at most ``ReadBatch/datagrams`` of them; the rest
    /// wait for the next round.
    public func readable() {
        for _ in 0..<ReadBatch.datagrams {
            guard let datagram = (try? socket.receive()) ?? nil else { return }
            guard datagram.source == configuration.server else { dropped += 1; continue }
            let count = datagram.payload.count
            let received: Received = datagram.payload.withUnsafeBytes { raw in
                let datagram = UnsafeRawBufferPointer(rebasing: raw[..<count])
                if let notice = ControlNotice(decoding: datagram) { return .notice(notice) }
                if count >= 4, raw[0] == ControlMessage.magic.0, raw[1] == ControlMessage.magic.1, raw[2] != ControlMessage.version {
                    return .notice(.version(lowest: raw[2], highest: raw[2]))
                }
                return (try? ControlMessage(authenticating: datagram, key: controlKey)).map { .message($0) } ?? .dropped
            }
            let message: ControlMessage
            switch received {
            case .notice(let notice): handle(notice); continue
            case .dropped: dropped += 1; continue
            case .message(let authentic): message = authentic
            }
            guard message.sender == configuration.serverKey, message.partyID == partyID else { dropped += 1; continue }
            let now = clock.unixMillis
            let offset = Int64(clamping: message.timestampMillis) - Int64(clamping: now)
            switch replay.check(timestamp: message.timestampMillis, nonce: message.nonce, now: now) {
            case .fresh:
                if case .refused(.clockSkew) = message.body { onClockSkew?(offset) }
                handle(message.body)
            case .expired:
                // Authentic, but out of the window: nothing it says is acted on; the offset is reported.
                dropped += 1
                onClockSkew?(offset)
            case .replayed:
                dropped += 1
            }
        }
    }

    private enum Received { case notice(ControlNotice), message(ControlMessage), dropped }

    /// Unauthenticated answers: they change nothing but what the client sends next.
    private func handle(_ notice: ControlNotice) {
        switch notice {
        case .cookie(let nonce, let cookie):
            // Only the answer to the register just sent counts; the register goes again at once with it.
            guard nonce == registerNonce, state != .registered else { dropped += 1; return }
            self.cookie = cookie
            sendRegister()
        case .version(let lowest, let highest):
            guard !(lowest...max(lowest, highest)).contains(ControlMessage.version) else { return }
            if serverVersions == nil || serverVersions! != (lowest, highest) { onVersionMismatch?(lowest, highest) }
            serverVersions = (lowest, highest)
        }
    }

    /// Records of the view the last `registered` answer announced that have not come yet.
    private var presentsAwaited: Int {
        max(0, (announcedOthers ?? 0) - presented.values.lazy.filter { $0 == self.viewRevision }.count)
    }

    /// Once every record the last `registered` answer announced has come, the members known before
    /// that it did not bring are gone: each is reported as having left.
    private func settleView() {
        let incomplete = announcedOthers != nil && presentsAwaited > 0
        scheduler.updateContext(of: machine) { $0.viewIncomplete = incomplete }
        guard announcedOthers != nil, presentsAwaited == 0, !earlier.isEmpty else { return }
        let gone = earlier
        earlier = [:]
        for key in gone.keys.sorted() { onChange?(.left, gone[key]!) }
    }

    /// A record the server introduced, with its certificate verified and its granted prefixes; nil
    /// (reported) when the certificate does not verify.
    private func verified(_ record: MemberRecord) -> MemberRecord? {
        do {
            let certificate = try MemberCertificate.verified(record.certificate, authority: configuration.authority, party: partyID,
                                                             member: record.key, now: clock.unixSeconds)
            var record = record
            record.addresses = certificate.allowedPrefixes
            return record
        } catch {
            refusedCertificates += 1
            onBadCertificate?(record.key, error)
            return nil
        }
    }

    private func handle(_ body: ControlMessage.Body) {
        serverVersions = nil
        switch body {
        case .registered(let epoch, let revision, let heartbeat, let observed, let others):
            // A restarted server (another epoch) restores its members offline until they register
            // again: one its view does not bring may not have left. Records of this view that
            // overtook its answer are in it already.
            presented = presented.filter { $0.value == revision }
            if epoch == self.epoch {
                for (key, record) in members where presented[key] == nil { earlier[key] = record }
            } else {
                earlier = [:]
            }
            self.epoch = epoch
            self.revision = revision
            viewRevision = revision
            self.observed = observed
            members = members.filter { presented[$0.key] != nil }
            announcedOthers = Int(others)
            scheduler.post(.viewDue, to: machine, after: .seconds(1))
            settleView()
            scheduler.updateContext(of: machine) { $0.heartbeat = .seconds(max(1, Int(heartbeat))) }
            scheduler.post(.registeredAck, to: machine)
        case .member(let event, let record, let revision):
            guard record.key != configuration.key else { return }
            // Pushes count the party's revisions one by one: a jump means one was lost, so the
            // revision stays behind and the next heartbeat's ack asks for a resync.
            if event != .present, revision == self.revision &+ 1 { self.revision = revision }
            let before = earlier.removeValue(forKey: record.key)
            if event == .present && (presented[record.key] != nil || presented.count < Self.presentedLimit) { presented[record.key] = revision }
            defer { settleView() }
            if event == .left {
                guard let known = members.removeValue(forKey: record.key) ?? before else { return }
                onChange?(event, known)
                return
            }
            guard let record = verified(record) else { return }
            members[record.key] = record
            onChange?(event, record)
        case .heartbeatAck(let epoch, let revision):
            if epoch != self.epoch {
                scheduler.post(.resync, to: machine)
            } else if revision != self.revision || presentsAwaited > 0 {
                // A push was lost: the answer to a register brings every record again.
                scheduler.post(.update, to: machine)
            } else {
                scheduler.post(.heartbeatAcked, to: machine)
            }
        case .refused(let refusal):
            if refusal == .registerAgain { scheduler.post(.resync, to: machine) }
            onRefused?(refusal)
        case .punch(let peer, let start):
            // Only with a member the server introduced (certificate verified): the announcement
            // brings its current candidates, the certificate stays the one verified. One not known
            // here joined with a push that was lost: the view is asked for again now, not at the
            // next heartbeat, so that this side meets the peer while its punch is still on.
            guard var known = members[peer.key] else {
                dropped += 1
                if scheduler.machine(machine)?.context.updatePending == false { scheduler.post(.update, to: machine) }
                return
            }
            known.nat = peer.nat
            known.candidates = peer.candidates
            members[peer.key] = known
            onPunch?(known, start)
        case .relays(let peer, let offers):
            let unmasked = offers.map { offer in
                var offer = offer
                offer.replyKey = zip(offer.replyKey, Keys.replyKeyMask(controlKey: controlKey, token: offer.token)).map { $0 ^ $1 }
                return offer
            }
            onRelays?(peer, unmasked)
        case .register, .heartbeat, .leave, .punchRequest, .relayRequest:
            dropped += 1
        }
    }
}
