import CLinux
import EventLoop
import Net
import Relay
import Time

/// The relay server on the simulated Internet: the real `RelayCore` — allocations granted only
/// with a token the control server issued (each token once), answers under the token's reply key,
/// latches authenticated and taken only from the address the token names, the first datagram held
/// for a side not latched yet, releases, idle expiry, the per-party limit — with its service port
/// and its allocation ports on a host of the network, as `RelayServer` binds them, configured as
/// `lanrage relay` is by default. A restart loses every allocation and every token used.
final class SimulatedRelayServer: RelayPorts {
    static let address = IPv4Address(192, 0, 2, 20)
    /// The service port, which the control server offers.
    static let service = Endpoint(.v4(address), 3478)

    /// The key the relay shares with the control server (relay tokens are signed with it).
    let key: [UInt8]
    private(set) var core: RelayCore!
    private let host: SimulatedHost
    private unowned let network: SimulatedNetwork
    private var sockets: [UInt16: SimulatedSocket] = [:]
    /// Each open port's pair, and when the relay last forwarded a datagram of each pair.
    private var pairs: [UInt16: [UInt8]] = [:]
    private var lastForwarded: [[UInt8]: Nanoseconds] = [:]

    init(on network: SimulatedNetwork, key: [UInt8]) {
        self.network = network
        self.key = key
        host = network.addHost("relay", address: Self.address)
        let service = host.socket(port: Self.service.port)
        core = Self.core(key: key, ports: self, clock: network.clock)
        service.onReadable = { [unowned self, unowned service] in
            while let datagram = try? service.receive() {
                let answer = datagram.payload.withUnsafeBytes { core.service($0, from: datagram.source) }
                if let answer { _ = try? service.send(answer, to: datagram.source) }
            }
        }
        network.add(Ticker(every: .seconds(1), clock: network.clock) { [unowned self] in core.expireIdle() })
    }

    /// Its port range (`--ports`): the service port, then 1,000 allocation ports.
    static let ports: ClosedRange<UInt16> = 3478...3478 + 1000

    private static func core(key: [UInt8], ports: SimulatedRelayServer, clock: VirtualClock) -> RelayCore {
        let core = RelayCore(RelayCore.Configuration(listen: [.v4(address)], ports: Self.ports, key: key), ports: ports, clock: clock)
        core.logger.logLevel = .critical
        return core
    }

    /// The ports held now.
    var held: Int { sockets.count }

    /// When the relay last forwarded a datagram of the pair `pair` names (`Keys.pairID`).
    func lastForwarded(pair: [UInt8]) -> Nanoseconds? { lastForwarded[pair] }

    /// The relay restarts: every allocation and every used token is gone, its ports closed.
    func restart() {
        for port in Array(sockets.keys) { close(port) }
        core = Self.core(key: key, ports: self, clock: network.clock)
    }

    // MARK: Ports

    /// The handle is the port.
    func open(_ port: UInt16, on address: IPAddress, for allocation: Allocation, side: Int) -> Int32? {
        if sockets[port] != nil { close(port) }
        let socket = host.socket(port: port)
        socket.onReadable = { [unowned self, unowned socket, unowned allocation] in
            var activity = false
            while let datagram = try? socket.receive() {
                var storage = sockaddr_storage()
                datagram.source.withSockAddr { address, length in
                    withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(length))) }
                }
                if datagram.payload.withUnsafeBytes({ core.received($0, from: storage, on: allocation, side: side) }) { activity = true }
            }
            if activity { core.touch(allocation) }
        }
        sockets[port] = socket
        pairs[port] = allocation.pairID
        return Int32(port)
    }

    func close(_ port: UInt16) {
        guard sockets.removeValue(forKey: port) != nil else { return }
        pairs[port] = nil
        host.close(port: port)
    }

    func send(_ datagram: UnsafeRawBufferPointer, through handle: Int32, to destination: UnsafePointer<sockaddr>, length: socklen_t) -> Bool {
        let port = UInt16(truncatingIfNeeded: handle)
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: destination, count: Int(length))) }
        guard let socket = sockets[port], let to = Endpoint(storage) else { return false }
        if let pair = pairs[port] { lastForwarded[pair] = network.clock.now }
        _ = try? socket.send(Array(datagram), to: to)
        return true
    }
}
