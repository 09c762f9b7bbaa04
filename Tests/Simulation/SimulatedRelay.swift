import Net

/// A relay on the simulated Internet, as far as NATs see one: it answers whatever reaches it, so a
/// member's WireGuard keepalives through it keep the member's NAT mapping alive, answered.
final class SimulatedRelay {
    let endpoint: Endpoint
    private let socket: SimulatedSocket

    init(on network: SimulatedNetwork, at endpoint: Endpoint) {
        guard case .v4(let address) = endpoint.address else { preconditionFailure("the simulated network is IPv4") }
        self.endpoint = endpoint
        socket = network.addHost("relay", address: address).socket(port: endpoint.port)
        socket.onReadable = { [unowned self] in
            while let datagram = try? socket.receive() { _ = try? socket.send(datagram.payload, to: datagram.source) }
        }
    }
}
