import CLinux
import EventLoop
import Net
import Time

/// NAT behaviour discovery (RFC 5780) on an event loop: the pure `Discovery` machine, its
/// datagrams sent from a port socket, its answers handed over by the owner of the socket (on the
/// agent's WireGuard port STUN arrives beside punches), its retransmission timers here.
/// `NATDetector.run` runs it on a loop of its own for `lanrage netcheck`.
public final class NATDetector: TimerSource {
    private let socket: any PortSocket
    private let clock: any TimeSource
    private var discovery: Discovery?
    /// The armed transaction timers, in the order armed: due ones fire by deadline, ties in that
    /// order, so that a run in virtual time is the same every time (a dictionary's order is not).
    private var timers: [(id: TransactionID, deadline: Duration)] = []
    private let policy: RetransmissionPolicy
    private let finished: (Result<NATReport, DiscoveryFailure>) -> Void
    /// Called once per run with the public endpoint of the first binding answer (before `finished`).
    public var mapped: ((Endpoint) -> Void)?
    private var mappedReported = false
    /// When the last run started (monotonic), to space reruns out.
    public private(set) var startedAt: Nanoseconds?
    /// The last answer: the last run's report, with what the run before measured and this one
    /// could not when the NAT is the same (``NATReport/keepingEarlier(_:)``). A failed run leaves
    /// it standing: the mapping a server did not answer about has not changed for that.
    public private(set) var report: NATReport?

    /// The agent's: four sends over one second, so a filtering test that gets no answer (the NAT
    /// filtered it) decides in 1 s instead of netcheck's 2.3 s; punches wait for this result.
    public static let agentPolicy = RetransmissionPolicy(initialRTO: .milliseconds(100), maxRTO: .milliseconds(400), attempts: 4,
                                                         finalWait: .milliseconds(300))

    /// A detector sending from `socket`; `finished` gets each run's report or the reason there is none.
    public init(socket: any PortSocket, clock: any TimeSource, policy: RetransmissionPolicy = NATDetector.agentPolicy,
                finished: @escaping (Result<NATReport, DiscoveryFailure>) -> Void) {
        self.socket = socket
        self.clock = clock
        self.policy = policy
        self.finished = finished
    }

    /// Whether a run is under way.
    public var isRunning: Bool { discovery != nil }

    /// Starts a run against `servers` unless one is under way. `localAddresses` (this host's own,
    /// read when not given) tell an open NAT: the public address is one of them.
    public func start(servers: [Endpoint], localAddresses: [IPAddress]? = nil) {
        guard discovery == nil, let first = servers.first else { return }
        let wildcard: IPAddress = first.address.family == AF_INET6
            ? .v6(IPv6Address(bytes: [UInt8](repeating: 0, count: 16))!) : .v4(IPv4Address(0))
        let local = localAddresses ?? (try? LocalAddresses.all()) ?? []
        var machine = Discovery(servers: servers, localEndpoint: Endpoint(wildcard, socket.port), localAddresses: local,
                                policy: policy)
        let now = Duration.nanoseconds(clock.now)
        startedAt = clock.now
        mappedReported = false
        let actions = machine.start(at: now)
        discovery = machine
        perform(actions)
    }

    /// A STUN datagram that arrived on the port.
    public func received(_ datagram: PortDatagram) {
        guard var machine = discovery else { return }
        let now = Duration.nanoseconds(clock.now)
        let actions: [Discovery.Action]
        do {
            actions = machine.handle(.received(try Message(decoding: datagram.payload), from: datagram.source), at: now)
        } catch {
            actions = machine.handle(.undecodable(error, from: datagram.source), at: now)
        }
        discovery = machine
        if !mappedReported, let endpoint = machine.mappedEndpoint {
            mappedReported = true
            mapped?(endpoint)
        }
        perform(actions)
    }

    public var nextDeadline: Nanoseconds? { timers.min { $0.deadline < $1.deadline }?.deadline.nanoseconds }

    @discardableResult
    public func fireDueTimers() -> Int {
        let now = Duration.nanoseconds(clock.now)
        let due = timers.enumerated().filter { $0.element.deadline <= now }
            .sorted { ($0.element.deadline, $0.offset) < ($1.element.deadline, $1.offset) }.map { $0.element.id }
        for id in due {
            guard let index = timers.firstIndex(where: { $0.id == id }) else { continue }
            timers.remove(at: index)
            guard var machine = discovery else { break }
            let actions = machine.handle(.timerFired(id), at: now)
            discovery = machine
            perform(actions)
        }
        return due.count
    }

    private func perform(_ actions: [Discovery.Action]) {
        for action in actions {
            switch action {
            case .send(let bytes, let destination):
                // An unreachable server is not fatal: its transaction times out and says so.
                _ = try? socket.send(bytes, to: destination)
            case .armTimer(let id, let after):
                timers.removeAll { $0.id == id }
                timers.append((id, .nanoseconds(clock.now) + after))
            case .cancelTimer(let id):
                timers.removeAll { $0.id == id }
            case .finished(let result):
                discovery = nil
                timers = []
                guard case .success(let found) = result else { return finished(result) }
                let kept = found.keepingEarlier(report)
                report = kept
                finished(.success(kept))
                return
            }
        }
    }
}
