#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import Logging
import Net
import Rendezvous
import StateChart

/// A member's connection to a control server: registers its candidates, keeps the registry's view
/// of the party up to date from the pushes, asks for punches and relays. Its states are the
/// ``RegistrationChart``, run by a ``Scheduler``; sockets and timers are the event loop's.
public final class ControlClient {
    public struct Configuration: Sendable {
        public var server: Endpoint
        public var party: String
        public var key: MemberKey
        public var nat: NATKind = .unknown
        public var candidates: [Candidate] = []
        /// The overlay prefixes this member routes (its tunnel address): the others' allowed IPs.
        public var addresses: [IPPrefix] = []

        public init(server: Endpoint, party: String, key: MemberKey) {
            self.server = server
            self.party = party
            self.key = key
        }
    }

    public var configuration: Configuration
    public let socket: UDPSocket
    public private(set) var members: [MemberKey: MemberRecord] = [:]
    public private(set) var observed: Endpoint?
    public private(set) var epoch: UInt64?
    public private(set) var revision: UInt64 = 0
    /// Messages from the server dropped (unauthentic, replayed, malformed).
    public private(set) var dropped = 0
    /// Times the client got registered (the first time and after every reconnect).
    public private(set) var registrations = 0
    public var onPunch: ((MemberRecord, UInt64) -> Void)?
    public var onRelays: ((MemberKey, [RelayOffer]) -> Void)?
    public var onChange: ((ControlMessage.MemberEvent, MemberRecord) -> Void)?
    public var onRefused: ((ControlMessage.Refusal) -> Void)?

    let partyKey: [UInt8]
    let partyID: UInt64
    private var replay = ReplayWindow()
    private var buffer = [UInt8](repeating: 0, count: 2048)
    private(set) var scheduler: Scheduler<Executor>!
    private var machine = MachineID(0)

    public final class Executor: ActionExecutor {
        public typealias Spec = RegistrationChart
        unowned var client: ControlClient?
        public func execute(_ action: RegistrationAction, for id: MachineID) { client?.execute(action) }
    }

    public init(_ configuration: Configuration, secret: [UInt8], loop: EventLoop, clock: any SchedulerClock = MonotonicClock(),
                local: Endpoint? = nil, logger: Logger = Logger(label: "lanrage.control-client")) throws {
        self.configuration = configuration
        partyKey = Keys.partyKey(name: configuration.party, secret: secret)
        partyID = Keys.partyID(name: configuration.party)
        let any: IPAddress = configuration.server.address.family == AF_INET ? .v4(IPv4Address(0)) : .v6(IPv6Address(bytes: [UInt8](repeating: 0, count: 16))!)
        socket = try UDPSocket(binding: local ?? Endpoint(any, 0))
        // A resync brings every member's record at once: room for a party of hundreds.
        socket.enlargeBuffers(to: 1 << 20)
        let executor = Executor()
        scheduler = Scheduler(chart: RegistrationChart.chart, clock: clock, executor: executor, logger: logger)
        executor.client = self
        try loop.register(socket.descriptor) { [unowned self] in self.readable() }
        loop.addTimers(scheduler)
    }

    /// The registration machine's state.
    public var state: RegistrationState { scheduler.machine(machine)?.state ?? .idle }

    public func start() {
        machine = scheduler.add(name: "\(configuration.key)", context: RegistrationContext())
        scheduler.post(.start, to: machine)
    }

    public func stop() { scheduler.post(.stop, to: machine) }

    /// Sends new candidates (e.g. after a new STUN result).
    public func update(nat: NATKind, candidates: [Candidate]) {
        configuration.nat = nat
        configuration.candidates = candidates
        if state == .registered { send(registration) }
    }

    public func requestPunch(with peer: MemberKey) { send(.punchRequest(target: peer)) }
    public func requestRelay(with peer: MemberKey) { send(.relayRequest(target: peer)) }

    func execute(_ action: RegistrationAction) {
        switch action {
        case .sendRegister: send(registration)
        case .sendHeartbeat: send(.heartbeat(revision: revision))
        case .sendLeave: send(.leave)
        case .reportRegistered: registrations += 1
        case .reportDisconnected: break
        }
    }

    private var registration: ControlMessage.Body {
        .register(nat: configuration.nat, candidates: configuration.candidates, addresses: configuration.addresses)
    }

    func send(_ body: ControlMessage.Body) {
        let message = ControlMessage(partyID: partyID, timestampMillis: UnixTime.millis(), nonce: Crypto.randomUInt64(),
                                     sender: configuration.key, body: body)
        _ = try? socket.send(message.encoded(key: partyKey), to: configuration.server)
    }

    /// Handles at most ``ReadBatch/datagrams`` datagrams; the rest wait for the next round.
    private func readable() {
        for _ in 0..<ReadBatch.datagrams {
            guard let (count, from) = (try? socket.receive(into: &buffer)) ?? nil else { return }
            guard from == configuration.server else { dropped += 1; continue }
            let message: ControlMessage
            do {
                message = try buffer.withUnsafeBytes { raw in
                    try ControlMessage(authenticating: UnsafeRawBufferPointer(rebasing: raw[..<count]), key: partyKey)
                }
            } catch {
                dropped += 1
                continue
            }
            guard message.sender == .server, message.partyID == partyID,
                  replay.check(timestamp: message.timestampMillis, nonce: message.nonce, now: UnixTime.millis()) == .fresh
            else { dropped += 1; continue }
            handle(message.body)
        }
    }

    private func handle(_ body: ControlMessage.Body) {
        switch body {
        case .registered(let epoch, let revision, let heartbeat, let observed, _):
            self.epoch = epoch
            self.revision = revision
            self.observed = observed
            members = [:]
            scheduler.updateContext(of: machine) { $0.heartbeat = .seconds(max(1, Int(heartbeat))) }
            scheduler.post(.registeredAck, to: machine)
        case .member(let event, let record, let revision):
            guard record.key != configuration.key else { return }
            if event == .left { members[record.key] = nil } else { members[record.key] = record }
            // Pushes count the party's revisions one by one: a jump means one was lost, so the
            // revision stays behind and the next heartbeat's ack asks for a resync.
            if event != .present, revision == self.revision + 1 { self.revision = revision }
            onChange?(event, record)
        case .heartbeatAck(let epoch, let revision):
            if epoch != self.epoch || revision != self.revision {
                scheduler.post(.resync, to: machine)
            } else {
                scheduler.post(.heartbeatAcked, to: machine)
            }
        case .refused(let refusal):
            if refusal == .registerAgain { scheduler.post(.resync, to: machine) }
            onRefused?(refusal)
        case .punch(let peer, let start):
            onPunch?(peer, start)
        case .relays(let peer, let offers):
            onRelays?(peer, offers)
        case .register, .heartbeat, .leave, .punchRequest, .relayRequest:
            dropped += 1
        }
    }
}
