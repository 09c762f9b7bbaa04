import Net
import Rendezvous
import Time

/// A relay that forwards, as the relay server does: an allocation request carries a relay token
/// the control server issued (verified here under the key the two share, as the relay does: a
/// forged or expired one is refused); one allocation per pair, opened on its first request with a
/// port for each side; a side asking again gets its port again. A latch from a member's WireGuard
/// port tells the relay where that side is, taken only from the address the side's token names,
/// and a datagram from there to one port goes out of the other to the other side. A release by
/// either side closes the pair's allocation, both ports; so does 120 s without a datagram. Counts
/// what it forwarded per pair, and when last.
///
/// The allocation service's own messages are modelled (each crosses the Internet under the
/// network's conditions, delayed, sometimes lost), not its wire protocol; the relay answers no
/// load queries, so the control server offers it as one not heard from.
final class SimulatedRelayService {
    /// The first byte of a latch (the model's; the relay protocol's own is not needed here).
    static let latch: UInt8 = 0xF8
    static let address = IPv4Address(192, 0, 2, 20)
    /// The allocation service's endpoint, which the control server offers.
    static let service = Endpoint(.v4(address), 3478)

    /// The key the relay shares with the control server (relay tokens are signed with it).
    let key: [UInt8]
    private let host: SimulatedHost
    private unowned let network: SimulatedNetwork
    private struct Allocation {
        let sockets: [SimulatedSocket]
        /// Each side's address as its token names it, once the side asked.
        var addresses: [IPAddress?] = [nil, nil]
        var latched: [Endpoint?] = [nil, nil]
        var active: Nanoseconds
    }

    /// An allocation that receives nothing for this long is dropped, as the relay server's idle timeout does.
    static let idleTimeout: Nanoseconds = 120_000_000_000
    private var allocations: [[UInt8]: Allocation] = [:]
    /// Port → the pair and the side it serves.
    private var ports: [UInt16: (pair: [UInt8], side: Int)] = [:]
    private var lastForwarded: [[UInt8]: Nanoseconds] = [:]
    /// Requests refused: their token did not verify.
    private(set) var refused = 0

    init(on network: SimulatedNetwork, key: [UInt8]) {
        self.network = network
        self.key = key
        host = network.addHost("relay", address: Self.address)
    }

    /// The ports held now.
    var held: Int { ports.count }

    /// When the relay last forwarded a datagram of the pair `pair` names (`Keys.pairID`).
    func lastForwarded(pair: [UInt8]) -> Nanoseconds? { lastForwarded[pair] }

    /// A member asks for its side of the pair its offer's token names; `granted` gets the grant, or
    /// `nil` when no answer came within 2 s. The request goes again every 300 ms until answered, as
    /// the agent's relay client sends it.
    func allocate(_ offer: RelayOffer, granted: @escaping (RelayGrant?) -> Void) {
        var answered = false
        for attempt in 0..<7 {
            network.after(.milliseconds(300 * Int64(attempt))) { [unowned self] in
                guard !answered else { return }
                network.cross { [unowned self] in
                    guard let endpoint = allocate(token: offer.token) else { return }
                    network.cross {
                        guard !answered else { return }
                        answered = true
                        granted(RelayGrant(offer: offer, endpoint: endpoint))
                    }
                }
            }
        }
        network.after(.seconds(2)) {
            guard !answered else { return }
            answered = true
            granted(nil)
        }
    }

    /// A member gives its allocation back: the relay closes the port one crossing later (a lost
    /// release is sent again, as the agent's relay client does: only later).
    func release(_ grant: RelayGrant) {
        let conditions = network.conditions
        let crossings: Int64 = network.random.happens(conditions.loss) ? 3 : 1
        network.after(.nanoseconds(crossings * conditions.delay + network.random.nanoseconds(in: 0...conditions.jitter))) { [unowned self] in
            release(grant.endpoint)
        }
    }

    /// The side's endpoint of the allocation `token` names, opened with both ports on the pair's
    /// first request; `nil` when the token does not verify.
    private func allocate(token: [UInt8]) -> Endpoint? {
        guard let token = token.withUnsafeBytes({ raw in try? RelayToken(verifying: raw, key: key, nowSeconds: network.clock.unixSeconds) }),
              token.side < 2 else {
            refused += 1
            network.note("relay: a request with a token that does not verify refused")
            return nil
        }
        let side = Int(token.side)
        if allocations[token.pairID] == nil {
            let sockets = [host.socket(), host.socket()]
            for (index, socket) in sockets.enumerated() {
                ports[socket.port] = (token.pairID, index)
                socket.onReadable = { [unowned self, unowned socket] in
                    while let datagram = try? socket.receive() { received(datagram, on: socket.port) }
                }
            }
            allocations[token.pairID] = Allocation(sockets: sockets, active: network.clock.now)
            expireWhenIdle(token.pairID)
        }
        allocations[token.pairID]!.addresses[side] = token.address
        return allocations[token.pairID]!.sockets[side].local
    }

    /// A side gave its allocation back: the pair's ports close, both.
    private func release(_ endpoint: Endpoint) {
        guard let pair = ports[endpoint.port]?.pair, let allocation = allocations[pair] else { return }
        network.note("relay: an allocation closed (\(endpoint.port))")
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

    private func expireWhenIdle(_ pair: [UInt8]) {
        guard let allocation = allocations[pair] else { return }
        network.after(.nanoseconds(allocation.active + Self.idleTimeout - network.clock.now)) { [unowned self] in
            guard let allocation = allocations[pair] else { return }
            if network.clock.now - allocation.active >= Self.idleTimeout {
                network.note("relay: an allocation idle, dropped (\(allocation.sockets[0].port))")
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
            if allocation.addresses[side] == datagram.source.address {
                allocation.latched[side] = datagram.source
            } else {
                network.note("relay: a latch from \(datagram.source), not the token's address, ignored")
            }
            allocations[pair] = allocation
            return
        }
        allocations[pair] = allocation
        guard allocation.latched[side] == datagram.source, let destination = allocation.latched[1 - side] else { return }
        lastForwarded[pair] = network.clock.now
        _ = try? allocation.sockets[1 - side].send(datagram.payload, to: destination)
    }
}
