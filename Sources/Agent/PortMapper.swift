import EventLoop
import Net
import Punch
import Rendezvous
import Time

/// Runs ``PortMapping`` on the agent's loop: its own UDP socket toward the IPv4 default gateway's
/// port 5351, answers taken only from there, its timers, and the mapping given back at exit.
final class PortMapper: TimerSource {
    private let socket: UDPSocket
    let gateway: Endpoint
    private(set) var machine: PortMapping
    private let clock: any TimeSource
    private var buffer = [UInt8](repeating: 0, count: 128)
    /// The mapping appeared, went, or moved.
    var onChange: (() -> Void)?

    /// A mapper of UDP `port` with `protocols`, or nil when there is no IPv4 default gateway or no
    /// route to it. The PCP nonce is derived from `secret` and the port: an agent restarted without
    /// giving its mapping back (killed) still owns it, where a new nonce would be refused until the
    /// old lease ran out.
    init?(port: UInt16, protocols: [PortMappingProtocol], secret: [UInt8], loop: EventLoop, clock: any TimeSource) {
        guard !protocols.isEmpty, let (socket, gateway, client) = PortMappingProtocol.gatewaySocket(), let client else { return nil }
        let nonce = Array(Crypto.hash(Array("lanrage PCP nonce".utf8) + [UInt8(port >> 8), UInt8(port & 0xFF)], key: secret, count: 16).prefix(12))
        self.socket = socket
        self.gateway = gateway
        self.clock = clock
        machine = PortMapping(client: client, internalPort: port, protocols: protocols, nonce: nonce)
        guard (try? loop.register(socket.descriptor, handler: { [unowned(unsafe) self] in self.readable() })) != nil else { return nil }
        loop.addTimers(self)
    }

    func start() { apply(machine.start(now: clock.now)) }

    /// Gives the mapping back (one datagram: the agent is exiting).
    func stop() {
        if let bytes = machine.stop() { _ = try? socket.send(bytes, to: gateway) }
    }

    var nextDeadline: Nanoseconds? { machine.deadline }

    @discardableResult
    func fireDueTimers() -> Int {
        guard let deadline = machine.deadline, deadline <= clock.now else { return 0 }
        apply(machine.timer(now: clock.now))
        return 1
    }

    private func readable() {
        for _ in 0..<ReadBatch.datagrams {
            guard let (count, from) = (try? socket.receive(into: &buffer)) ?? nil else { return }
            guard from == gateway else { continue }
            apply(machine.received(Array(buffer[..<count]), now: clock.now))
        }
    }

    private func apply(_ output: PortMapping.Output) {
        if let bytes = output.send { _ = try? socket.send(bytes, to: gateway) }
        if output.changed { onChange?() }
    }
}
