import CLinux
import EventLoop
import Net
import Punch
import Rendezvous
import Time

/// Runs ``PortMapping`` on the loop: a UDP socket connected to the IPv4 default gateway's port 5351
/// (PCP, NAT-PMP) and, for UPnP-IGD, one for SSDP that takes answers from any port of the gateway
/// (some answer from another port than 1900) — ICMP errors heard on both — a non-blocking TCP
/// connection per HTTP request, its timers, and the mapping given back at exit.
public final class PortMapper: TimerSource {
    private let socket: UDPSocket
    private let searchSocket: UDPSocket?
    /// The gateway's address.
    public let gateway: IPAddress
    /// The machine, for its mapping and state.
    public private(set) var machine: PortMapping
    private let loop: EventLoop
    private let clock: any TimeSource
    private var buffer = [UInt8](repeating: 0, count: 1500)
    private var connection: TCPStream?
    private var outgoing: ArraySlice<UInt8> = []
    private var incoming: [UInt8] = []
    /// The gateway answered a request with an ICMP error or refused its connection.
    public private(set) var refused = false
    /// The mapping appeared, went, or moved.
    public var onChange: (() -> Void)?

    /// The most an HTTP answer may hold (a gateway's description is a few kilobytes).
    static let answerLimit = 65_536
    /// How long giving back a UPnP-IGD mapping at exit may take.
    static let stopPatience: Nanoseconds = 1_000_000_000

    /// A mapper of UDP `port` (nil: this mapper's own socket's port, which nothing else uses) with
    /// `protocols` and the PCP `nonce` (12 bytes), or nil when there is no IPv4 default gateway or
    /// no route to it.
    public init?(port: UInt16?, protocols: [PortMappingProtocol], nonce: [UInt8], loop: EventLoop, clock: any TimeSource) {
        guard !protocols.isEmpty, let (socket, gateway, client) = PortMappingProtocol.gatewaySocket(), let client else { return nil }
        var searchSocket: UDPSocket?
        if protocols.contains(.upnp) {
            guard let search = try? UDPSocket(binding: Endpoint(.unspecified(AF_INET), 0)) else { return nil }
            search.reportErrorsUnconnected()
            searchSocket = search
        }
        self.socket = socket
        self.searchSocket = searchSocket
        self.gateway = gateway.address
        self.loop = loop
        self.clock = clock
        machine = PortMapping(client: client, gateway: gateway.address, internalPort: port ?? socket.local.port, protocols: protocols, nonce: nonce)
        for udp in [socket, searchSocket].compactMap({ $0 }) {
            guard (try? loop.register(udp.descriptor, handler: { [unowned(unsafe) self] in self.readable(udp) })) != nil else { return nil }
        }
        loop.addTimers(self)
    }

    deinit {
        closeConnection()
        for udp in [socket, searchSocket].compactMap({ $0 }) { loop.unregister(udp.descriptor) }
    }

    /// The PCP nonce of an agent's mapping of `port`, derived from its private key `secret`: an
    /// agent restarted without giving its mapping back (killed) still owns it, where a new nonce
    /// would be refused until the old lease ran out.
    public static func nonce(port: UInt16, secret: [UInt8]) -> [UInt8] {
        Array(Crypto.hash(Array("lanrage PCP nonce".utf8) + [UInt8(port >> 8), UInt8(port & 0xFF)], key: secret, count: 16).prefix(12))
    }

    public func start() { apply(machine.start(now: clock.now)) }

    /// Gives the mapping back: a datagram, or for UPnP-IGD an HTTP exchange, all of them within
    /// ``stopPatience`` (the process is exiting).
    public func stop() {
        closeConnection()
        let end = clock.now + Self.stopPatience
        func left() -> Duration { .nanoseconds(max(0, end - clock.now)) }
        for request in machine.stop() {
            switch request.transport {
            case .datagram(let port):
                _ = try? socket.send(request.encoded, to: Endpoint(gateway, port))
            case .http(let endpoint):
                let bytes = request.encoded
                guard let stream = try? TCPStream(connectingTo: endpoint), (try? Readiness.writable(stream.descriptor, timeout: left())) == true,
                      stream.pendingError == 0, stream.send(bytes[...]) == bytes.count else { continue }
                // Its answer, so that the gateway has acted before the process goes.
                var answer: [UInt8] = []
                while clock.now < end, (try? Readiness.readable([stream.descriptor], timeout: left()))?.isEmpty == false,
                      stream.receive(appendingTo: &answer, limit: Self.answerLimit) {}
            }
        }
    }

    public var nextDeadline: Nanoseconds? { machine.deadline }

    @discardableResult
    public func fireDueTimers() -> Int {
        guard let deadline = machine.deadline, deadline <= clock.now else { return 0 }
        apply(machine.timer(now: clock.now))
        return 1
    }

    private func readable(_ udp: UDPSocket) {
        // An ICMP error for this socket's last request: nothing answers there. (Read before the
        // error queue is drained: draining resets the pending error.)
        let refusedNow = UDPSocket.takePendingError(udp.descriptor) == ECONNREFUSED
        if udp === searchSocket { udp.drainErrorQueue() }
        if refusedNow {
            refused = true
            if case .datagram(let port)? = machine.request?.transport, port == (udp === socket ? PortMappingProtocol.serverPort : PortMappingProtocol.ssdpPort) {
                apply(machine.failed(now: clock.now))
            }
        }
        for _ in 0..<ReadBatch.datagrams {
            guard let (count, from) = (try? udp.receive(into: &buffer)) ?? nil else { return }
            guard from.address == gateway else { continue }
            apply(machine.received(Array(buffer[..<count]), now: clock.now))
        }
    }

    private func apply(_ output: PortMapping.Output) {
        if let request = output.send {
            deliver(request)
        } else if !awaitingHTTP {
            // The HTTP request timed out or was given up: its late answer is nobody's.
            closeConnection()
        }
        if output.changed { onChange?() }
    }

    private var awaitingHTTP: Bool {
        guard case .http? = machine.request?.transport else { return false }
        return true
    }

    private func deliver(_ request: PortMappingRequest) {
        closeConnection()
        switch request.transport {
        case .datagram(let port):
            guard let udp = port == PortMappingProtocol.ssdpPort ? searchSocket : socket else { return }
            do {
                try udp.send(request.encoded, to: Endpoint(gateway, port))
            } catch {
                // A refusal from an earlier send surfaces here too.
                if error.errno == ECONNREFUSED { refused = true }
                apply(machine.failed(now: clock.now))
            }
        case .http(let endpoint):
            guard let stream = try? TCPStream(connectingTo: endpoint),
                  (try? loop.register(stream.descriptor, for: .writable, handler: { [unowned(unsafe) self] in self.connectionReady() })) != nil else {
                return apply(machine.failed(now: clock.now))
            }
            (connection, outgoing, incoming) = (stream, request.encoded[...], [])
        }
    }

    /// The HTTP connection is writable (connected, or failed) or has an answer to read.
    private func connectionReady() {
        guard let connection else { return }
        if !outgoing.isEmpty {
            guard connection.pendingError == 0, let sent = connection.send(outgoing) else { return connectionFailed(refused: true) }
            outgoing = outgoing.dropFirst(sent)
            if outgoing.isEmpty {
                loop.unregister(connection.descriptor)
                guard (try? loop.register(connection.descriptor, handler: { [unowned(unsafe) self] in self.connectionReady() })) != nil else {
                    return connectionFailed(refused: false)
                }
            }
            return
        }
        if connection.receive(appendingTo: &incoming, limit: Self.answerLimit) { return }
        let answer = incoming
        closeConnection()
        apply(machine.answered(answer, now: clock.now))
    }

    private func connectionFailed(refused: Bool) {
        closeConnection()
        self.refused = self.refused || refused
        apply(machine.failed(now: clock.now))
    }

    private func closeConnection() {
        guard let connection else { return }
        loop.unregister(connection.descriptor)
        (self.connection, outgoing, incoming) = (nil, [], [])
    }
}
