import CLinux
import Control
import EventLoop
import Net
import Output
import Peer
import Punch
import Relay
import Rendezvous
import StateChart
import STUN
import Time

/// One member's agent on the simulated network, as far as its peer connections go: the agent's
/// own ``PeerExecutor`` — the real peer chart on a scheduler on the network's clock, the real
/// `PeerConnection` deciding, the same execution of every action — with this as its I/O: the
/// member's punch driver, a WireGuard model (``SimulatedWireGuard``), and the real `RelayClient` and
/// `ControlClient` on sockets of the member's host, through its NATs to the real relay and control
/// cores (``SimulatedRelayServer``, ``SimulatedControlServer``), wired to the executor as the agent
/// wires them. It detects its NAT again when a path is lost and registers a changed
/// record. Port-restricted ↔ symmetric, the port-restricted side sprays and the symmetric side
/// opens the member's fan, whose winning port carries WireGuard in a forwarder.
final class SimulatedAgent: PeerIO {
    /// One transition of one peer's machine, for the properties and the trace.
    struct Step {
        var peer: Int
        var at: Nanoseconds
        var from: PeerState
        var event: PeerEvent
        var to: PeerState
        var path: PeerContext.Path
    }

    let member: SimulatedMember
    let wireGuard: SimulatedWireGuard
    let timings: PeerTimings
    let control: ControlClient
    let relays: RelayClient
    /// This member's record as last announced to the control server: its NAT type and candidates.
    private(set) var announced: MemberRecord
    private(set) var peers: PeerExecutor<SimulatedAgent>!
    /// The party's members, by key, and their keys by index.
    private var directory: [MemberKey: SimulatedMember] = [:]
    private var keys: [Int: MemberKey] = [:]
    /// When this side's machine for each peer started first.
    private(set) var metAt: [Int: Nanoseconds] = [:]
    /// Per peer, the loopback endpoint of the fan port's forwarder that carries it.
    private var forwarders: [Int: Endpoint] = [:]
    /// Every action executed, and every transition made.
    private(set) var executed: Set<PeerAction> = []
    private(set) var steps: [Step] = []
    /// Punch and relay requests sent to the control server.
    private(set) var punchRequests = 0, relayRequests = 0
    private unowned let network: SimulatedNetwork

    init(member: SimulatedMember, timings: PeerTimings, server: SimulatedControlServer, network: SimulatedNetwork) {
        self.member = member
        self.timings = timings
        self.network = network
        announced = Self.record(of: member)
        var configuration = server.configuration(for: member)
        configuration.nat = announced.nat
        configuration.candidates = announced.candidates
        var logger = Logger(label: "simulation")
        logger.logLevel = .critical
        let socket = member.host.socket()
        control = try! ControlClient(configuration, privateKey: member.privateKey, socket: socket, clock: network.clock, logger: logger)
        let relaySocket = member.host.socket()
        relays = RelayClient(sockets: [(AF_INET, relaySocket)], clock: network.clock)
        wireGuard = SimulatedWireGuard(owner: member.index, socket: member.port, network: network)
        peers = PeerExecutor(io: self, privateKey: member.privateKey, publicKey: MemberKey(member.publicKey)!, timings: timings,
                             clock: network.clock, logger: logger)
        network.add(peers.scheduler)
        network.add(control.scheduler)
        network.add(relays)
        socket.onReadable = { [unowned self] in control.readable() }
        relaySocket.onReadable = { [unowned self, unowned relaySocket] in relays.readable(relaySocket) }
        control.onChange = { [unowned self] event, record in peers.memberChanged(event, record) }
        control.onPunch = { [unowned self] record, start in peers.punchAnnounced(record, startMillis: start) }
        control.onRelays = { [unowned self] key, offers in peers.relaysOffered(key, offers) }
        control.onRefused = { [unowned network] refusal in network.note("\(member.name): the control server refused: \(refusal)") }
        member.onWireGuard = { [unowned self] datagram in wireGuard.receive(datagram) }
        member.onPinned = { [unowned self] peer, endpoint in
            guard let id = machineID(peer) else { return }
            network.note("\(member.name) pinned \(link(peer)?.io.name ?? "?") at \(endpoint)")
            peers.pinned(id)
        }
        member.detector.mapped = { [unowned self] endpoint in mappedEndpointLearned(endpoint) }
        member.onDetected = { [unowned self] in detected() }
    }

    /// `member`'s record: its detected NAT type, its LAN endpoint and its public one (once known).
    static func record(of member: SimulatedMember) -> MemberRecord {
        MemberRecord(key: MemberKey(member.publicKey)!, nat: member.natType,
                     candidates: [Candidate(.local, member.local)] + (member.report.map { [Candidate(.reflexive, $0.publicEndpoint)] } ?? []))
    }

    /// The party's members: the control server introduces them by key.
    func know(_ members: [SimulatedMember]) {
        for peer in members {
            directory[MemberKey(peer.publicKey)!] = peer
            keys[peer.index] = MemberKey(peer.publicKey)!
        }
    }

    /// The member joins the party: its control client registers.
    func join() {
        network.note("\(member.name) registers as \(control.configuration.key)")
        control.start()
    }

    /// The member leaves the party: its connections close, and its control client says goodbye
    /// (the agent exits then: what the control server still sends it is not acted on).
    func leave() {
        for id in peers.machines.values { peers.scheduler.post(.peerLeft, to: id) }
        control.stop()
        control.onChange = nil
        control.onPunch = nil
        control.onRelays = nil
    }

    /// The machine of `peer`, and its link.
    func machine(_ peer: Int) -> Machine<PeerChart>? { machineID(peer).flatMap { peers.scheduler.machine($0) } }
    func link(_ peer: Int) -> PeerLink<SimulatedMember>? { machineID(peer).flatMap { peers.links[$0] } }

    private func machineID(_ peer: Int) -> MachineID? {
        keys[peer].flatMap { peers.machines[$0] }
    }

    /// The peer's index in the party.
    private func index(_ id: MachineID) -> Int? { peers.links[id]?.io.index }

    // MARK: Records

    /// The first STUN answer of a detection: a new public endpoint is announced at once.
    private func mappedEndpointLearned(_ endpoint: Endpoint) {
        let record = MemberRecord(key: announced.key, nat: announced.nat,
                                  candidates: [Candidate(.local, member.local), Candidate(.reflexive, endpoint)])
        guard record != announced else { return }
        announce(record)
        peers.publicEndpointLearned()
    }

    /// A detection finished: its answer is announced, and the peers' connections learn it.
    private func detected() {
        let record = Self.record(of: member)
        if record != announced { announce(record) }
        peers.natLearned()
    }

    private func announce(_ record: MemberRecord) {
        network.note("\(member.name) announces \(record.nat) at \(record.candidates.map { "\($0.endpoint)" }.joined(separator: ", "))")
        announced = record
        control.update(nat: record.nat, candidates: record.candidates)
    }

    // MARK: Members

    func meet(_ record: MemberRecord) -> SimulatedMember {
        let peer = directory[record.key]!
        if metAt[peer.index] == nil { metAt[peer.index] = network.clock.now }
        return peer
    }
    /// WireGuard learns the peer; the machine's initial entry actions run next.
    func joined(_ id: MachineID) {
        if let peer = index(id) { wireGuard.add(peer) }
        let chart = peers.scheduler.chart
        for state in chart.states where state.state == chart.initial { executed.formUnion(state.entry) }
    }
    func recordChanged(_ id: MachineID, from old: MemberRecord) {}

    func remove(_ id: MachineID) {
        guard let peer = index(id) else { return }
        wireGuard.apply(.remove, to: peer, keepalive: timings.persistentKeepalive)
        member.driver.stop(peer)
        member.closeFan(for: peer)
        stopForwarding(peer)
    }

    // MARK: This side

    var announcedNAT: NATType { announced.nat }
    var isDetecting: Bool { member.detector.isRunning }
    var reflexiveKnown: Bool { announced.candidates.contains { $0.kind == .reflexive } }
    var detectionStartedAt: Nanoseconds? { member.detector.startedAt }
    func rediscover() { member.detectAgain() }
    var relaysEnabled: Bool { true }
    var preferredRelays: [Endpoint] { [] }
    func randomUInt64() -> UInt64 { network.random.next() }

    /// Where the control server saw this member (else its first STUN answer) against where it saw
    /// the peer, as the agent asks.
    func reachableWithoutNAT(_ link: PeerLink<SimulatedMember>) -> Bool {
        guard let own = (control.observed ?? member.report?.publicEndpoint)?.address else { return false }
        return own == link.observed?.address
    }

    // MARK: Punching

    func punch(_ id: MachineID, _ session: PunchSession, observed: IPAddress?) {
        guard let link = peers.links[id] else { return }
        network.note("\(member.name) punches \(link.io.name) in session \(session.session)")
        member.driver.start(link.io.index, session, observed: observed)
    }

    func learned(_ id: MachineID) -> [Endpoint] { index(id).map { member.driver.learned($0) } ?? [] }
    func pinned(_ id: MachineID) -> Endpoint? { index(id).flatMap { member.driver.pinned($0) } }
    func burst(_ id: MachineID) { if let peer = index(id) { member.driver.burst(peer) } }
    func addCandidates(_ candidates: [Endpoint], for id: MachineID) {
        if let peer = index(id) { member.driver.add(candidates: candidates, for: peer) }
    }

    func spray(_ id: MachineID, at address: IPAddress) {
        guard let link = peers.links[id] else { return }
        let sent = member.driver.probe(link.io.index, PortPrediction.spray(at: address, using: &network.random))
        network.note("\(member.name) sprays \(sent) guesses at \(address) (peer \(link.io.name))")
    }

    func openFan(_ id: MachineID, toward target: Endpoint) { if let peer = index(id) { member.openFan(for: peer, toward: target) } }
    func fanTarget(_ id: MachineID) -> Endpoint? { index(id).flatMap { member.driver.fanTarget($0) } }
    func endPunch(_ id: MachineID) { if let peer = index(id) { member.closeFan(for: peer) } }

    /// Pinned through a fan port: WireGuard sends to that port's forwarder.
    func directEndpoint(_ id: MachineID, pinned: Endpoint) -> Endpoint? {
        guard let peer = index(id), let socket = member.driver.pinnedFanSocket(peer) else { return pinned }
        member.closeFan(for: peer)
        stopForwarding(peer)
        let inside = wireGuard.forward(through: socket, to: pinned)
        forwarders[peer] = inside
        network.note("\(member.name): direct to \(peers.links[id]!.io.name) through fan port \(socket.port)")
        return inside
    }

    private func stopForwarding(_ peer: Int) {
        guard let inside = forwarders.removeValue(forKey: peer), let socket = wireGuard.stopForwarding(inside.port) else { return }
        member.close(socket)
    }

    // MARK: Servers

    func requestPunch(with key: MemberKey) {
        punchRequests += 1
        control.requestPunch(with: key)
    }

    func requestRelay(with key: MemberKey) {
        relayRequests += 1
        control.requestRelay(with: key)
    }

    func allocate(_ offer: RelayOffer, _ granted: @escaping (RelayGrant?) -> Void) { relays.allocate(offer, done: granted) }
    func latch(_ grant: RelayGrant) { _ = try? member.port.send(relays.latch(grant), to: grant.endpoint) }
    func release(_ grant: RelayGrant) { relays.release(grant) }

    // MARK: WireGuard

    func read(_ id: MachineID, maxAge: Duration) -> WireGuardReading? { index(id).flatMap { wireGuard.reading($0) } }

    func apply(_ steps: [WireGuardStep], to id: MachineID) {
        guard let peer = index(id) else { return }
        for step in steps { wireGuard.apply(step, to: peer, keepalive: timings.persistentKeepalive) }
    }

    /// A forwarder of another path closes; a datagram its fan port held comes to WireGuard.
    func pointed(_ id: MachineID, at endpoint: Endpoint) {
        guard let peer = index(id), let inside = forwarders[peer] else { return }
        if inside != endpoint {
            stopForwarding(peer)
        } else if let socket = member.driver.pinnedFanSocket(peer), let early = member.driver.takeHeld(peer, on: socket) {
            wireGuard.deliver(early, from: inside)
        }
    }

    func forwarded(_ id: MachineID) -> Bool { index(id).map { forwarders[$0] != nil } ?? false }

    // MARK: Time and traces

    func after(_ delay: Duration, _ body: @escaping () -> Void) { network.after(delay, body) }

    func note(_ note: PeerNote, for key: MemberKey) {
        let peer = directory[key]?.name ?? "?"
        switch note {
        case .roamedToRelay(_, let direct):
            network.note("\(member.name): WireGuard roamed to the relay, \(peer)'s direct endpoint \(direct) set again")
        case .pathLost(let silence, let handshakeAge):
            network.note("\(member.name): path to \(peer) lost (silence \(silence), handshake \(handshakeAge.map { "\($0)" } ?? "none"))")
        case .directFound(let endpoint):
            network.note("\(member.name): WireGuard found the direct path to \(peer) at \(endpoint)")
        case .relayAllocated(_, let endpoint):
            network.note("\(member.name): relay granted for \(peer) at \(endpoint)")
        case .punchAnnounced(let state, let session):
            network.note("\(member.name): punch with \(peer) announced for \(session), in \(state)")
        case .punchRequested:
            network.note("\(member.name): asks for a punch with \(peer)")
        case .relayRefused(let service):
            network.note("\(member.name): relay \(service) did not grant \(peer) an allocation")
        default:
            break
        }
    }

    func transitioned(_ record: TransitionRecord<PeerChart>, of link: PeerLink<SimulatedMember>) {
        executed.formUnion(record.transition.actions)
        guard !record.transition.isInternal else { return }
        let path = peers.scheduler.machine(record.machine)?.context.path ?? .none
        steps.append(Step(peer: link.io.index, at: record.time, from: record.transition.from, event: record.transition.event,
                          to: record.transition.to, path: path))
        network.note("\(member.name)→\(link.io.name): \(record.transition.from) --\(record.transition.event)--> \(record.transition.to) (\(path))")
    }
}
