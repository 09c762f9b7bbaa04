import Net
import Punch
import Rendezvous
import STUN
import Time

/// One member's WireGuard port on the simulated network, with the agent's own NAT detector and
/// punch driver on it (the real code, on a simulated socket and the network's clock), and the fans
/// of extra ports a symmetric side opens toward port-restricted peers. Peers are numbered by
/// their index in the party.
final class SimulatedMember {
    let index: Int
    let name: String
    let host: SimulatedHost
    let port: SimulatedSocket
    let detector: NATDetector
    let driver: PunchDriver<Int, SimulatedSocket>
    let privateKey: [UInt8]
    let publicKey: [UInt8]
    /// The detector's answer, once it finished.
    var detection: Result<NATReport, DiscoveryFailure>?
    /// Per peer, when the punch driver pinned it, where, and whether through a fan port.
    var pins: [Int: (endpoint: Endpoint, at: Nanoseconds, throughFan: Bool)] = [:]
    private var fans: [Int: [SimulatedSocket]] = [:]
    private unowned let network: SimulatedNetwork

    /// The WireGuard port.
    static let listenPort: UInt16 = 51820

    init(index: Int, host: SimulatedHost, network: SimulatedNetwork) {
        self.index = index
        name = index < 26 ? String(UnicodeScalar(UInt8(97 + index))) : "m\(index)"
        self.host = host
        self.network = network
        port = host.socket(port: Self.listenPort)
        privateKey = network.random.key()
        publicKey = Crypto.publicKey(ofPrivate: privateKey)
        driver = PunchDriver(socket: port, clock: network.clock)
        var finished: ((Result<NATReport, DiscoveryFailure>) -> Void)?
        detector = NATDetector(socket: port, clock: network.clock) { result in finished?(result) }
        finished = { [unowned self] result in
            detection = result
            defer { onDetected?() }
            switch result {
            case .success(let report): network.note("\(name) detected \(report.natType) at \(report.publicEndpoint)")
            case .failure(let failure): network.note("\(name) detection failed: \(failure)")
            }
        }
        network.add(detector)
        port.onReadable = { [unowned self] in readable() }
    }

    /// The detected type, or `.unknown` (as the agent punches after a failed detection).
    var natType: NATType { report?.natType ?? .unknown }

    /// The detected type once detection finished (`.unknown` when it failed), else `nil`.
    var detectedType: NATType? { detection == nil ? nil : natType }

    /// The detector's last answer (a failed rerun leaves it standing).
    var report: NATReport? { detector.report }

    /// This member's WireGuard port as a peer on its LAN reaches it.
    var local: Endpoint { port.local }

    /// An agent on the member's port: WireGuard's datagrams (the handler says whether one was),
    /// every pin the driver reports, and every detection that finished.
    var onWireGuard: ((PortDatagram) -> Bool)?
    var onPinned: ((Int, Endpoint) -> Void)?
    var onDetected: (() -> Void)?

    /// Detects the NAT again (its mappings may have changed), as the agent's `rediscoverNAT` does.
    func detectAgain() {
        detector.start(servers: [ScenarioServers.stunPrimary], localAddresses: [.v4(host.address)])
    }

    private func readable() {
        guard let received = try? driver.receive() else { return }
        for (peer, endpoint) in received.pinned { pinned(peer, endpoint, throughFan: false) }
        for datagram in received.other where datagram.payload.count >= 20 {
            if onWireGuard?(datagram) != true { detector.received(datagram) }
        }
    }

    /// A pin ends this side's attempt, as Direct's `endPunch` does in the agent: the fan closes
    /// but for the winning port, which carries on in a forwarder (outside the driver's count).
    private func pinned(_ peer: Int, _ endpoint: Endpoint, throughFan: Bool) {
        if pins[peer] == nil {
            pins[peer] = (endpoint, network.clock.now, throughFan)
            network.note("\(name) pinned peer \(peer) at \(endpoint)\(throughFan ? " through a fan port" : "")")
        }
        closeFan(for: peer)
        onPinned?(peer, endpoint)
    }

    /// From now on, WireGuard's persistent keepalive (every `interval`) through `relay` from the
    /// WireGuard port: what keeps a member's NAT mapping in use between punch rounds, as any
    /// relayed or direct peer's keepalives do for an agent (a mapping left idle expires, and the
    /// NAT may give the port a new public port).
    func keepAlive(through relay: Endpoint, every interval: Duration, first: Duration) {
        network.after(first) { [unowned self] in
            _ = try? port.send([UInt8](repeating: 0, count: 32), to: relay)
            keepAlive(through: relay, every: interval, first: interval)
        }
    }

    // MARK: Fans

    /// Opens a fan toward `peer`'s `target` (as many ports as the driver allows), as the agent's symmetric side does.
    func openFan(for peer: Int, toward target: Endpoint) {
        guard fans[peer] == nil, driver.fanTarget(peer) == nil else { return }
        let sockets = (0..<driver.fanPortsAvailable).map { _ in host.socket() }
        for socket in sockets {
            socket.onReadable = { [unowned self, unowned socket] in
                if let endpoint = try? driver.receive(peer, on: socket) { pinned(peer, endpoint, throughFan: true) }
            }
        }
        fans[peer] = sockets
        driver.fan(peer, sockets, toward: target)
        network.note("\(name) fans \(sockets.count) ports toward \(target) (peer \(peer))")
    }

    /// Closes `peer`'s fan (the attempt is over), but for the port a pin came through: it carries
    /// on in the forwarder.
    func closeFan(for peer: Int) {
        for socket in driver.dropFan(peer) where socket !== driver.pinnedFanSocket(peer) { host.close(port: socket.port) }
        fans[peer] = nil
    }

    /// Closes a fan port that carried a forwarder.
    func close(_ socket: SimulatedSocket) { host.close(port: socket.port) }
}
