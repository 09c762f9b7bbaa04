import Net
import Time

/// A relay that forwards, as the relay server does: one allocation per pair, opened on its first
/// request with a port for each side; a side asking again gets its port again. A latch from a
/// member's WireGuard port tells the relay where that side is, and a datagram from there to one
/// port goes out of the other to the other side. A release by either side closes the pair's
/// allocation, both ports; so does 120 s without a datagram. Counts what it forwarded per pair,
/// and when last.
final class SimulatedRelayService {
    /// The first byte of a latch (the model's; the relay protocol's own is not needed here).
    static let latch: UInt8 = 0xF8

    private let host: SimulatedHost
    private unowned let network: SimulatedNetwork
    private struct Allocation {
        let sockets: [SimulatedSocket]
        var latched: [Endpoint?] = [nil, nil]
        var active: Nanoseconds
    }

    /// An allocation that receives nothing for this long is dropped, as the relay server's idle timeout does.
    static let idleTimeout: Nanoseconds = 120_000_000_000
    private var allocations: [Int: Allocation] = [:]
    /// Port → the pair and the side it serves.
    private var ports: [UInt16: (pair: Int, side: Int)] = [:]
    private(set) var forwarded: [Int: Int] = [:]
    private(set) var lastForwarded: [Int: Nanoseconds] = [:]

    init(on network: SimulatedNetwork, at address: IPv4Address) {
        self.network = network
        host = network.addHost("relay", address: address)
    }

    /// The ports held now.
    var held: Int { ports.count }

    /// Side `side`'s endpoint of `pair`'s allocation, opened with both ports on the pair's first request.
    func allocate(pair: Int, side: Int) -> Endpoint {
        if let allocation = allocations[pair] { return allocation.sockets[side].local }
        let sockets = [host.socket(), host.socket()]
        for (index, socket) in sockets.enumerated() {
            ports[socket.port] = (pair, index)
            socket.onReadable = { [unowned self, unowned socket] in
                while let datagram = try? socket.receive() { received(datagram, on: socket.port) }
            }
        }
        allocations[pair] = Allocation(sockets: sockets, active: network.clock.now)
        expireWhenIdle(pair)
        return sockets[side].local
    }

    /// A side gave its allocation back: the pair's ports close, both.
    func release(_ endpoint: Endpoint) {
        guard let pair = ports[endpoint.port]?.pair, let allocation = allocations[pair] else { return }
        network.note("relay: the pair \(pair)'s allocation closed (\(endpoint.port))")
        allocations[pair] = nil
        for socket in allocation.sockets {
            ports[socket.port] = nil
            host.close(port: socket.port)
        }
    }

    /// The relay restarts: every allocation is gone, its ports closed.
    func restart() {
        for allocation in allocations.values { release(allocation.sockets[0].local) }
    }

    private func expireWhenIdle(_ pair: Int) {
        guard let allocation = allocations[pair] else { return }
        network.after(.nanoseconds(allocation.active + Self.idleTimeout - network.clock.now)) { [unowned self] in
            guard let allocation = allocations[pair] else { return }
            if network.clock.now - allocation.active >= Self.idleTimeout {
                network.note("relay: the pair \(pair)'s allocation idle, dropped")
                release(allocation.sockets[0].local)
            } else {
                expireWhenIdle(pair)
            }
        }
    }

    private func received(_ datagram: PortDatagram, on port: UInt16) {
        guard let (pair, side) = ports[port], var allocation = allocations[pair] else { return }
        allocation.active = network.clock.now
        if datagram.payload.first == Self.latch {
            allocation.latched[side] = datagram.source
            allocations[pair] = allocation
            return
        }
        allocations[pair] = allocation
        guard allocation.latched[side] == datagram.source, let destination = allocation.latched[1 - side] else { return }
        forwarded[pair, default: 0] += 1
        lastForwarded[pair] = network.clock.now
        _ = try? allocation.sockets[1 - side].send(datagram.payload, to: destination)
    }
}
