import EventLoop
import Net
import Output
import Peer
import Punch
import Rendezvous
import StateChart
import STUN
import Time

/// One member's agent on the simulated network, as far as its peer connections go: the agent's
/// own ``PeerExecutor`` — the real peer chart on a scheduler on the network's clock, the real
/// `PeerConnection` deciding, the same execution of every action — with this as its I/O: the
/// member's punch driver, a WireGuard model (``SimulatedWireGuard``) and the scenario's control
/// server and relay. It detects its NAT again when a path is lost and registers a changed record;
/// its peers' records come from the control server, and their changes reach the connections as
/// the agent's do. Port-restricted ↔ symmetric, the port-restricted side sprays and the symmetric
/// side opens the member's fan, whose winning port carries WireGuard in a forwarder.
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
    /// This member's public address as the control server last told it.
    private(set) var observed: IPAddress
    /// This member's record as last announced to the control server: its NAT type and candidates.
    private(set) var announced: MemberRecord
    private(set) var peers: PeerExecutor<SimulatedAgent>!
    /// The members met, by key, and their keys by index.
    private var directory: [MemberKey: SimulatedMember] = [:]
    private var keys: [Int: MemberKey] = [:]
    /// The peers that left the party (the control client forgets them).
    private var departed: Set<Int> = []
    /// Per peer, the loopback endpoint of the fan port's forwarder that carries it.
    private var forwarders: [Int: Endpoint] = [:]
    /// Every action executed, and every transition made.
    private(set) var executed: Set<PeerAction> = []
    private(set) var steps: [Step] = []
    private unowned let network: SimulatedNetwork
    private unowned let control: SimulatedControl

    init(member: SimulatedMember, timings: PeerTimings, control: SimulatedControl, network: SimulatedNetwork) {
        self.member = member
        observed = control.observed[member.index]
        self.timings = timings
        self.control = control
        self.network = network
        announced = Self.record(of: member)
        wireGuard = SimulatedWireGuard(owner: member.index, socket: member.port, network: network)
        var logger = Logger(label: "simulation")
        logger.logLevel = .critical
        peers = PeerExecutor(io: self, privateKey: member.privateKey, publicKey: MemberKey(member.publicKey)!, timings: timings,
                             clock: network.clock, logger: logger)
        network.add(peers.scheduler)
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

    /// Starts a machine for `peer` (as the control server's record says now), WireGuard knowing the
    /// peer without an endpoint.
    func meet(_ peer: SimulatedMember) {
        know(peer)
        peers.upsert(control.record(of: peer.index))
    }

    private func know(_ peer: SimulatedMember) {
        directory[MemberKey(peer.publicKey)!] = peer
        keys[peer.index] = MemberKey(peer.publicKey)!
    }

    /// The peer left the party: nothing the control server sent before brings it back.
    func leave(_ peer: Int) {
        departed.insert(peer)
        if let id = machineID(peer) { peers.scheduler.post(.peerLeft, to: id) }
    }

    /// The machine of `peer`, and its link.
    func machine(_ peer: Int) -> Machine<PeerChart>? { machineID(peer).flatMap { peers.scheduler.machine($0) } }
    func link(_ peer: Int) -> PeerLink<SimulatedMember>? { machineID(peer).flatMap { peers.links[$0] } }

    private func machineID(_ peer: Int) -> MachineID? {
        keys[peer].flatMap { peers.machines[$0] }
    }

    /// The peer's index in the party.
    private func index(_ id: MachineID) -> Int? { peers.links[id]?.io.index }

    /// The control server announced a punch with `peer` at `startMillis`, with the peer's record
    /// as it has it: a member not met yet is met now, as the agent does; one that left is not.
    func punchAnnounced(with peer: Int, startMillis: UInt64) {
        guard !departed.contains(peer) else { return }
        know(control.agents[peer].member)
        peers.punchAnnounced(control.record(of: peer), startMillis: startMillis)
    }

    /// The control server's offers for the pair with `peer`.
    func relaysOffered(with peer: Int, _ offers: [RelayOffer]) {
        guard let key = link(peer)?.record.key else { return }
        peers.relaysOffered(key, offers)
    }

    /// The control server's answer came from a new public address of this member's.
    func observedChanged(to address: IPAddress) { observed = address }

    /// The control server sent `peer`'s record again.
    func recordChanged(_ record: MemberRecord, of peer: Int) {
        guard link(peer) != nil else { return }
        peers.upsert(record)
    }

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
        control.announce(record, from: member.index)
    }

    // MARK: Members

    func meet(_ record: MemberRecord) -> SimulatedMember { directory[record.key]! }
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

    /// Where the control server saw this member against where it saw the peer.
    func reachableWithoutNAT(_ link: PeerLink<SimulatedMember>) -> Bool { observed == link.observed?.address }

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
        if let peer = directory[key]?.index { control.requestPunch(from: member.index, with: peer) }
    }

    func requestRelay(with key: MemberKey) {
        if let peer = directory[key]?.index { control.requestRelay(from: member.index, with: peer) }
    }

    func allocate(_ offer: RelayOffer, _ granted: @escaping (RelayGrant?) -> Void) { control.allocate(offer, granted: granted) }

    func latch(_ grant: RelayGrant) {
        _ = try? member.port.send([SimulatedRelayService.latch] + [UInt8](repeating: 0, count: 31), to: grant.endpoint)
    }

    func release(_ grant: RelayGrant) { control.release(grant.endpoint) }

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
