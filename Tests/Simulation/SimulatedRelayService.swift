import Net
import Time

/// A relay that forwards, as the relay server does for a pair: each side gets a port of its own;
/// a latch from a member's WireGuard port tells the relay where that side is, and a datagram from
/// there to one port goes out of the other to the other side. A released port forwards nothing
/// more. Counts what it forwarded per pair, and when last.
final class SimulatedRelayService {
    /// The first byte of a latch (the model's; the relay protocol's own is not needed here).
    static let latch: UInt8 = 0xF8

    private let host: SimulatedHost
    private unowned let network: SimulatedNetwork
    private struct Port {
        let socket: SimulatedSocket
        let pair: Int
        let side: Int
        var latched: Endpoint?
        var active: Nanoseconds
    }

    /// An allocation that receives nothing for this long is dropped, as the relay server's idle timeout does.
    static let idleTimeout: Nanoseconds = 120_000_000_000
    private var ports: [UInt16: Port] = [:]
    /// Per pair, each side's port while it holds one; datagrams forwarded, and when the last went.
    private var allocations: [Int: [Int: UInt16]] = [:]
    private(set) var forwarded: [Int: Int] = [:]
    private(set) var lastForwarded: [Int: Nanoseconds] = [:]

    init(on network: SimulatedNetwork, at address: IPv4Address) {
        self.network = network
        host = network.addHost("relay", address: address)
    }

    /// The ports held now.
    var held: Int { ports.count }

    /// Side `side`'s endpoint of `pair`'s allocation (a port of its own, opened on its first request).
    func allocate(pair: Int, side: Int) -> Endpoint {
        if let port = allocations[pair]?[side] { return Endpoint(.v4(host.address), port) }
        let socket = host.socket()
        ports[socket.port] = Port(socket: socket, pair: pair, side: side, active: network.clock.now)
        expireWhenIdle(socket.port)
        socket.onReadable = { [unowned self, unowned socket] in
            while let datagram = try? socket.receive() { received(datagram, on: socket.port) }
        }
        allocations[pair, default: [:]][side] = socket.port
        return Endpoint(.v4(host.address), socket.port)
    }

    /// A side gave its allocation back: its port closes.
    func release(_ endpoint: Endpoint) {
        guard let port = ports[endpoint.port] else { return }
        ports[endpoint.port] = nil
        host.close(port: endpoint.port)
        allocations[port.pair]?[port.side] = nil
        if allocations[port.pair]?.isEmpty == true { allocations[port.pair] = nil }
    }

    /// The relay restarts: every allocation is gone, its port closed.
    func restart() {
        for port in ports.values { release(port.socket.local) }
    }

    private func expireWhenIdle(_ port: UInt16) {
        guard let entry = ports[port] else { return }
        network.after(.nanoseconds(entry.active + Self.idleTimeout - network.clock.now)) { [unowned self] in
            guard let entry = ports[port], entry.socket.port == port else { return }
            if network.clock.now - entry.active >= Self.idleTimeout {
                network.note("relay: port \(port) idle, dropped")
                release(entry.socket.local)
            } else {
                expireWhenIdle(port)
            }
        }
    }

    private func received(_ datagram: PortDatagram, on port: UInt16) {
        guard var entry = ports[port] else { return }
        entry.active = network.clock.now
        ports[port] = entry
        if datagram.payload.first == Self.latch {
            ports[port]!.latched = datagram.source
            return
        }
        guard entry.latched == datagram.source, let otherPort = allocations[entry.pair]?[1 - entry.side], let other = ports[otherPort],
              let destination = other.latched else { return }
        forwarded[entry.pair, default: 0] += 1
        lastForwarded[entry.pair] = network.clock.now
        _ = try? other.socket.send(datagram.payload, to: destination)
    }
}
