import Net
import Punch
import Rendezvous
import STUN
import Time

/// One member's WireGuard port on the simulated network, with the agent's own NAT detector and
/// punch driver on it (the real code, on a simulated socket and the network's clock), and the fan
/// of extra ports a symmetric side opens toward a port-restricted one.
final class SimulatedMember {
    let name: String
    let host: SimulatedHost
    let port: SimulatedSocket
    let detector: NATDetector
    let driver: PunchDriver<Int, SimulatedSocket>
    let privateKey: [UInt8]
    let publicKey: [UInt8]
    /// The detector's answer, once it finished.
    var detection: Result<NATReport, DiscoveryFailure>?
    /// When the punch driver pinned the peer, and where.
    var pinned: (endpoint: Endpoint, at: Nanoseconds, throughFan: Bool)?
    private unowned let network: SimulatedNetwork

    /// The peer's one identifier in the driver.
    static let peer = 0
    /// The WireGuard port.
    static let listenPort: UInt16 = 51820

    init(name: String, host: SimulatedHost, network: SimulatedNetwork) {
        self.name = name
        self.host = host
        self.network = network
        port = host.socket(port: Self.listenPort)
        privateKey = (0..<32).map { _ in UInt8.random(in: 0...255, using: &network.random) }
        publicKey = Crypto.publicKey(ofPrivate: privateKey)
        driver = PunchDriver(socket: port, clock: network.clock)
        var finished: ((Result<NATReport, DiscoveryFailure>) -> Void)?
        detector = NATDetector(socket: port, clock: network.clock) { result in finished?(result) }
        finished = { [unowned self] result in
            detection = result
            switch result {
            case .success(let report): network.note("\(name) detected \(report.natType) at \(report.publicEndpoint)")
            case .failure(let failure): network.note("\(name) detection failed: \(failure)")
            }
        }
        network.add(detector)
        port.onReadable = { [unowned self] in readable() }
    }

    /// The detected type, or `.unknown` (as the agent punches after a failed detection).
    var natType: NATType {
        if case .success(let report) = detection { return report.natType }
        return .unknown
    }

    var report: NATReport? {
        if case .success(let report) = detection { return report }
        return nil
    }

    /// This member's WireGuard port as the peer reaches it from its LAN.
    var local: Endpoint { port.local }

    private func readable() {
        guard let received = try? driver.receive() else { return }
        for (_, endpoint) in received.pinned where pinned == nil {
            pinned = (endpoint, network.clock.now, false)
            network.note("\(name) pinned \(endpoint)")
        }
        for datagram in received.other where datagram.payload.count >= 20 { detector.received(datagram) }
    }

    // MARK: The fan

    private var fan: [SimulatedSocket] = []

    /// Opens `DirectPathPlan.fanPorts` ports punching toward `target`, as the agent's symmetric side does.
    func openFan(toward target: Endpoint) {
        guard fan.isEmpty else { return }
        fan = (0..<DirectPathPlan.fanPorts).map { _ in host.socket() }
        for socket in fan {
            socket.onReadable = { [unowned self, unowned socket] in
                guard let endpoint = try? driver.receive(Self.peer, on: socket), pinned == nil else { return }
                pinned = (endpoint, network.clock.now, true)
                network.note("\(name) pinned \(endpoint) through fan port \(socket.port)")
            }
        }
        driver.fan(Self.peer, fan, toward: target)
    }

    /// Closes the fan (the attempt is over).
    func closeFan() {
        for socket in driver.dropFan(Self.peer) { host.close(port: socket.port) }
        fan = []
    }
}
