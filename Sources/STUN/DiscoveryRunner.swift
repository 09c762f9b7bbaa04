import CLinux
import Net
import Time

/// Runs a `Discovery` against the real network: one port socket (a bound UDP socket, or the raw
/// path next to WireGuard), `poll` with the next timer as deadline, the monotonic clock. For
/// `lanrage netcheck` and tests; the agent will drive the same machine from its event loop instead.
public enum DiscoveryRunner {
    /// Probes `servers` from `socket`; returns the report or the reason there is none.
    public static func run(
        servers: [Endpoint], socket: any PortSocket, localAddresses: [IPAddress],
        policy: RetransmissionPolicy = RetransmissionPolicy()
    ) throws(SystemError) -> Result<NATReport, DiscoveryFailure> {
        let wildcard: IPAddress = servers.first?.address.family == AF_INET6
            ? .v6(IPv6Address(bytes: [UInt8](repeating: 0, count: 16))!) : .v4(IPv4Address(0))
        var discovery = Discovery(servers: servers, localEndpoint: Endpoint(wildcard, socket.port),
                                  localAddresses: localAddresses, policy: policy)
        var timers: [TransactionID: Duration] = [:]
        var actions = discovery.start(at: MonotonicTime.now())
        while true {
            for action in actions {
                switch action {
                case .send(let bytes, let destination):
                    do { try socket.send(bytes, to: destination) } catch {
                        // An unreachable network is not fatal: the transaction times out and says so.
                        if error.errno != ENETUNREACH && error.errno != EHOSTUNREACH && error.errno != ECONNREFUSED { throw error }
                    }
                case .armTimer(let id, let after): timers[id] = MonotonicTime.now() + after
                case .cancelTimer(let id): timers[id] = nil
                case .finished(let result): return result
                }
            }
            actions = []
            let now = MonotonicTime.now()
            if let (id, deadline) = timers.min(by: { $0.value < $1.value }), deadline <= now {
                timers[id] = nil
                actions = discovery.handle(.timerFired(id), at: now)
                continue
            }
            let wait = timers.values.min().map { $0 - now } ?? .seconds(1)
            guard try !Readiness.readable([socket.descriptor], timeout: wait).isEmpty else { continue }
            // A bounded batch, so that a flood of strays cannot hold back the retransmission timers.
            for _ in 0..<ReadBatch.datagrams where actions.isEmpty {
                guard let datagram = try socket.receive() else { break }
                let at = MonotonicTime.now()
                do {
                    let message = try Message(decoding: datagram.payload)
                    actions += discovery.handle(.received(message, from: datagram.source), at: at)
                } catch {
                    actions += discovery.handle(.undecodable(error, from: datagram.source), at: at)
                }
            }
        }
    }
}

/// A STUN server on real sockets: the `BindingResponder` behind one socket per listen endpoint.
public final class STUNServer {
    public let responder: BindingResponder
    public let sockets: [UDPSocket]
    /// Requests answered so far.
    public private(set) var answered = 0

    public init(listen: Endpoint, alternate: Endpoint?, software: String = "lanrage") throws(SystemError) {
        var responder = BindingResponder(primary: listen, alternate: alternate, software: software)
        var sockets: [UDPSocket] = []
        for endpoint in responder.listenEndpoints { sockets.append(try UDPSocket(binding: endpoint, reuseAddress: true)) }
        if listen.port == 0 || alternate?.port == 0 {
            // Ports chosen by the kernel: rebuild the responder around what was bound (only without alternate).
            responder = BindingResponder(primary: sockets[0].local, alternate: alternate, software: software)
        }
        self.responder = responder
        self.sockets = sockets
    }

    /// Serves until `shouldStop` returns true (checked at least every `tick`).
    public func serve(tick: Duration = .milliseconds(200), shouldStop: () -> Bool = { false }) throws(SystemError) {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !shouldStop() {
            let ready = try Readiness.readable(sockets.map { $0.descriptor }, timeout: tick)
            for socket in sockets where ready.contains(socket.descriptor) {
                // A bounded batch: a flood on one socket cannot starve the other or `shouldStop`.
                for _ in 0..<ReadBatch.datagrams {
                    guard let (count, from) = (try? socket.receive(into: &buffer)) ?? nil else { break }
                    guard let reply = responder.respond(to: Array(buffer[..<count]), from: from, on: socket.local),
                          let out = sockets.first(where: { $0.local == reply.from }) else { continue }
                    _ = try? out.send(reply.bytes, to: reply.to)
                    answered += 1
                }
            }
        }
    }
}
