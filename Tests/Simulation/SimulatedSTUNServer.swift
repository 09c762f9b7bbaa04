import Net
import STUN

/// `lanrage stun-server --listen PRIMARY --alternate ALTERNATE` on the simulated Internet: the
/// real `BindingResponder` behind the four sockets of an RFC 5780 server (two hosts, two ports each).
public final class SimulatedSTUNServer {
    public let responder: BindingResponder
    private var sockets: [Endpoint: SimulatedSocket] = [:]

    public init(on network: SimulatedNetwork, primary: Endpoint, alternate: Endpoint) {
        responder = BindingResponder(primary: primary, alternate: alternate)
        var hosts: [IPAddress: SimulatedHost] = [:]
        for endpoint in responder.listenEndpoints {
            guard case .v4(let address) = endpoint.address else { preconditionFailure("the simulated network is IPv4") }
            let host = hosts[endpoint.address] ?? network.addHost("stun \(endpoint.address)", address: address)
            hosts[endpoint.address] = host
            let socket = host.socket(port: endpoint.port)
            sockets[endpoint] = socket
            socket.onReadable = { [unowned self, unowned socket] in self.answer(on: socket, local: endpoint) }
        }
    }

    private func answer(on socket: SimulatedSocket, local: Endpoint) {
        while let datagram = try? socket.receive() {
            guard let reply = responder.respond(to: datagram.payload, from: datagram.source, on: local),
                  let from = sockets[reply.from] else { continue }
            _ = try? from.send(reply.bytes, to: reply.to)
        }
    }
}
