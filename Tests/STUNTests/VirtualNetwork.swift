import Net
@testable import STUN

/// A NAT in virtual time: mapping and filtering as RFC 4787 defines them, nothing else.
struct SimulatedNAT {
    var mapping: MappingBehavior
    var filtering: FilteringBehavior
    var publicAddress: IPAddress
    var preservePort = true
    private var nextPort: UInt16 = 40000
    /// mapping key → public port
    private var mappings: [String: UInt16] = [:]
    /// public port → (inside endpoint, remotes contacted through it)
    private var bindings: [UInt16: (inside: Endpoint, remotes: Set<Endpoint>)] = [:]

    init(mapping: MappingBehavior, filtering: FilteringBehavior, publicAddress: IPAddress, preservePort: Bool = true) {
        self.mapping = mapping
        self.filtering = filtering
        self.publicAddress = publicAddress
        self.preservePort = preservePort
    }

    mutating func outbound(from inside: Endpoint, to remote: Endpoint) -> Endpoint {
        let key: String
        switch mapping {
        case .endpointIndependent: key = "\(inside)"
        case .addressDependent: key = "\(inside)>\(remote.address)"
        default: key = "\(inside)>\(remote)"
        }
        let port: UInt16
        if let existing = mappings[key] {
            port = existing
        } else {
            if preservePort, bindings[inside.port] == nil {
                port = inside.port
            } else {
                port = nextPort
                nextPort += 1
            }
            mappings[key] = port
            bindings[port] = (inside, [])
        }
        bindings[port]?.remotes.insert(remote)
        return Endpoint(publicAddress, port)
    }

    func inbound(from remote: Endpoint, to publicEndpoint: Endpoint) -> Endpoint? {
        guard publicEndpoint.address == publicAddress, let binding = bindings[publicEndpoint.port] else { return nil }
        switch filtering {
        case .endpointIndependent: return binding.inside
        case .addressDependent: return binding.remotes.contains { $0.address == remote.address } ? binding.inside : nil
        default: return binding.remotes.contains(remote) ? binding.inside : nil
        }
    }
}

/// How the simulated server behaves.
enum ServerKind {
    case rfc5780
    case oneAddress
    case silent
    case garbage
    /// Answers from its primary address whatever CHANGE-REQUEST says.
    case ignoresChangeRequest
}

/// Runs a `Discovery` against a simulated server behind an optional simulated NAT, in virtual time,
/// with a one-way latency. Returns the result and the virtual time it took.
struct VirtualNetwork {
    var nat: SimulatedNAT?
    var server: ServerKind = .rfc5780
    var latency: Duration = .milliseconds(10)
    var primary = Endpoint("192.0.2.1:3478")!
    var alternate = Endpoint("192.0.2.2:3479")!
    var local = Endpoint("203.0.113.10:51820")!
    var policy = RetransmissionPolicy()
    /// Extra events to inject before the real ones (strays).
    var strays: [(Message, Endpoint)] = []
    var sent: [(at: Duration, to: Endpoint)] = []

    mutating func run(servers: [Endpoint]? = nil) -> (result: Result<NATReport, DiscoveryFailure>, elapsed: Duration) {
        var discovery = Discovery(servers: servers ?? [primary], localEndpoint: local, localAddresses: [local.address],
                                  policy: policy)
        var now = Duration.zero
        var queue: [(at: Duration, seq: Int, event: Discovery.Event)] = []
        var cancelled: Set<TransactionID> = []
        var armed: [TransactionID: Int] = [:]
        var seq = 0
        let responder = BindingResponder(primary: primary, alternate: server == .oneAddress ? nil : alternate)

        func schedule(_ event: Discovery.Event, at time: Duration) {
            seq += 1
            queue.append((time, seq, event))
        }

        var actions = discovery.start(at: now)
        for (message, from) in strays { schedule(.received(message, from: from), at: .milliseconds(1)) }
        while true {
            for action in actions {
                switch action {
                case .finished(let result):
                    return (result, now)
                case .cancelTimer(let id):
                    cancelled.insert(id)
                case .armTimer(let id, let after):
                    cancelled.remove(id)
                    seq += 1
                    armed[id] = seq
                    queue.append((now + after, seq, .timerFired(id)))
                case .send(let bytes, let destination):
                    sent.append((now, destination))
                    var outside = local
                    if nat != nil { outside = nat!.outbound(from: local, to: destination) }
                    deliverToServer(bytes, from: outside, to: destination, responder: responder, schedule: schedule)
                }
            }
            queue.sort { ($0.at, $0.seq) < ($1.at, $1.seq) }
            guard !queue.isEmpty else { fatalError("discovery stalled") }
            let next = queue.removeFirst()
            now = next.at
            if case .timerFired(let id) = next.event, cancelled.contains(id) || armed[id] != next.seq { actions = []; continue }
            actions = discovery.handle(next.event, at: now)
        }
    }

    private mutating func deliverToServer(
        _ bytes: [UInt8], from outside: Endpoint, to destination: Endpoint, responder: BindingResponder,
        schedule: (Discovery.Event, Duration) -> Void
    ) {
        let arrival = sent.last!.at + latency
        switch server {
        case .silent:
            return
        case .garbage:
            deliverToClient(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8), from: destination, to: outside,
                            at: arrival + latency, schedule: schedule)
        case .oneAddress:
            // Every address is its own one-address server.
            let single = BindingResponder(primary: destination, alternate: nil)
            guard let reply = single.respond(to: bytes, from: outside, on: destination) else { return }
            deliverToClient(reply.bytes, from: reply.from, to: reply.to, at: arrival + latency, schedule: schedule)
        case .rfc5780, .ignoresChangeRequest:
            guard responder.listenEndpoints.contains(destination),
                  var reply = responder.respond(to: bytes, from: outside, on: destination) else { return }
            if server == .ignoresChangeRequest {
                reply = responder.respond(to: (try? Message(decoding: bytes)).map {
                    var plain = $0; plain.attributes.removeAll { if case .changeRequest = $0 { true } else { false } }
                    return plain.encoded()
                } ?? bytes, from: outside, on: destination)!
            }
            deliverToClient(reply.bytes, from: reply.from, to: reply.to, at: arrival + latency, schedule: schedule)
        }
    }

    private func deliverToClient(
        _ bytes: [UInt8], from remote: Endpoint, to outside: Endpoint, at time: Duration,
        schedule: (Discovery.Event, Duration) -> Void
    ) {
        if let nat, nat.inbound(from: remote, to: outside) == nil { return }
        do {
            schedule(.received(try Message(decoding: bytes), from: remote), time)
        } catch {
            schedule(.undecodable(error, from: remote), time)
        }
    }
}
