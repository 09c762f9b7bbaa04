import EventLoop
import Net
import Output
import Peer
import Punch
import Rendezvous
import StateChart
import STUN
import Time

/// One member's agent on the simulated network, as far as its peer connections go: the real peer
/// chart on a scheduler on the network's clock, the real `PeerConnection` deciding, and an
/// executor that carries the actions out as the agent's does — on the member's punch driver, a
/// WireGuard model (``SimulatedWireGuard``) and the scenario's control server and relay. It
/// detects its NAT again when a path is lost and registers a changed record; its peers' records
/// come from the control server, and their changes reach the connections as the agent's do. Port
/// prediction (fan and spray) is left to `PunchScenario`.
final class SimulatedAgent: ActionExecutor {
    typealias Spec = PeerChart

    /// What the agent keeps for one peer.
    struct Link {
        let peer: SimulatedMember
        let pairKey: PairKey
        let machine: MachineID
        let localKeyIsSmaller: Bool
        /// The peer's record, as the control server last sent it.
        var record: MemberRecord
        var connection = PeerConnection()
        var stateSince: Nanoseconds

        /// The peer's candidates and NAT, as its record says; its public address as the control server sees it.
        var candidates: [Endpoint] {
            record.candidates.map(\.endpoint).reduce(into: []) { seen, endpoint in if !seen.contains(endpoint) { seen.append(endpoint) } }
        }
        var nat: NATType { record.nat }
        var observed: IPAddress? { record.candidates.first { $0.kind == .observed }?.endpoint.address }
    }

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
    private(set) var scheduler: Scheduler<SimulatedAgent>!
    private(set) var links: [MachineID: Link] = [:]
    private(set) var machines: [Int: MachineID] = [:]
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
        scheduler = Scheduler(chart: PeerChart.chart(timings), clock: network.clock, executor: self, logger: logger)
        scheduler.onTransition = { [unowned self] record in transitioned(record) }
        network.add(scheduler)
        member.onWireGuard = { [unowned self] datagram in wireGuard.receive(datagram) }
        member.onPinned = { [unowned self] peer, endpoint in
            guard let id = machines[peer] else { return }
            network.note("\(member.name) pinned \(links[id]?.peer.name ?? "?") at \(endpoint)")
            scheduler.post(.punchAcked, to: id)
        }
        member.detector.mapped = { [unowned self] endpoint in mappedEndpointLearned(endpoint) }
        member.onDetected = { [unowned self] in detected() }
    }

    /// `member`'s record: its detected NAT type, its LAN endpoint and its public one (once known).
    static func record(of member: SimulatedMember) -> MemberRecord {
        MemberRecord(key: MemberKey(member.publicKey)!, nat: member.natType,
                     candidates: [Candidate(.local, member.local)] + (member.report.map { [Candidate(.reflexive, $0.publicEndpoint)] } ?? []))
    }

    /// Starts a machine for `peer` (as its record says now), WireGuard knowing the peer without an endpoint.
    func meet(_ peer: SimulatedMember) {
        guard machines[peer.index] == nil else { return }
        let smaller = MemberKey(member.publicKey)! < MemberKey(peer.publicKey)!
        wireGuard.add(peer.index)
        let id = scheduler.add(name: peer.name, context: PeerContext(timings: timings))
        links[id] = Link(peer: peer, pairKey: PairKey(localPrivateKey: member.privateKey, localPublicKey: member.publicKey,
                                                      remotePublicKey: peer.publicKey)!,
                         machine: id, localKeyIsSmaller: smaller, record: control.record(of: peer.index),
                         stateSince: network.clock.now)
        machines[peer.index] = id
        scheduler.post(.candidatesKnown, to: id)
    }

    /// The peer left the party.
    func leave(_ peer: Int) {
        if let id = machines[peer] { scheduler.post(.peerLeft, to: id) }
    }

    /// The machine of `peer`, and its link.
    func machine(_ peer: Int) -> Machine<PeerChart>? { machines[peer].flatMap { scheduler.machine($0) } }
    func link(_ peer: Int) -> Link? { machines[peer].flatMap { links[$0] } }

    // MARK: Actions

    func execute(_ action: PeerAction, for id: MachineID) {
        executed.insert(action)
        guard let link = links[id] else { return }
        let peer = link.peer.index
        switch action {
        case .requestCandidates:
            if !link.candidates.isEmpty { scheduler.post(.candidatesKnown, to: id) }
        case .detectNAT:
            decideDirect(id)
        case .startPunch:
            startPunch(id)
        case .sendPunch:
            member.driver.burst(peer)
        case .endPunch:
            break
        case .rediscoverNAT:
            // At most every 30 s, as the agent does.
            if let started = member.detector.startedAt, network.clock.now - started > 30_000_000_000 { member.detectAgain() }
        case .setDirectEndpoint:
            if let pinned = member.driver.pinned(peer) { point(id, at: pinned) }
        case .allocateRelay:
            links[id]!.connection.path = nil
            guard let state = scheduler.machine(id)?.state else { return }
            switch links[id]!.connection.relayUse.allocate(in: state, enabled: true, localKeyIsSmaller: link.localKeyIsSmaller,
                                                           earlyPaused: false) {
            case .reuse: scheduler.post(.relayReady, to: id)
            case .request: control.requestRelay(from: member.index, with: peer)
            case .none: break
            }
        case .setRelayEndpoint:
            guard let grant = link.connection.relayUse.grant else { return }
            latch(grant)
            point(id, at: grant.endpoint)
            for delay in [Duration.milliseconds(300), .seconds(1)] {
                network.after(delay) { [weak self] in
                    guard let self, let current = self.links[id]?.connection.relayUse.grant, current == grant else { return }
                    latch(grant)
                }
            }
        case .releaseRelay:
            if let grant = links[id]!.connection.relayUse.release() { control.release(grant.endpoint) }
        case .enableKeepalive:
            if let lag = PeerConnection.keepaliveTurn(localKeyIsSmaller: link.localKeyIsSmaller) {
                network.after(lag) { [weak self] in self?.takeTurn(id) }
            } else {
                apply([.kick], to: peer)
            }
        case .readHandshake:
            if let grant = link.connection.relayUse.grant, link.connection.path?.endpoint == grant.endpoint { latch(grant) }
            readWireGuard(id)
        case .removePeer:
            apply([.remove], to: peer)
            member.driver.stop(peer)
        }
    }

    private func apply(_ steps: [WireGuardStep], to peer: Int) {
        for step in steps { wireGuard.apply(step, to: peer, keepalive: timings.persistentKeepalive) }
    }

    private func latch(_ grant: RelayGrant) {
        _ = try? member.port.send([SimulatedRelayService.latch] + [UInt8](repeating: 0, count: 31), to: grant.endpoint)
    }

    private func decideDirect(_ id: MachineID) {
        guard let link = links[id], let state = scheduler.machine(id)?.state else { return }
        let facts = PunchCoordination.Facts(localNAT: announced.nat, detecting: member.detector.isRunning,
                                            reflexiveKnown: announced.candidates.contains { $0.kind == .reflexive },
                                            peerNAT: link.nat, peerReflexiveKnown: link.record.candidates.contains { $0.kind == .reflexive },
                                            localKeyIsSmaller: link.localKeyIsSmaller, withoutNAT: observed == link.observed)
        let decision = links[id]!.connection.detect(facts, in: state, now: network.clock.now)
        var natKnown: PeerContext.NATKnown?
        scheduler.updateContext(of: id) { natKnown = $0.decided(decision) }
        switch natKnown {
        case .now: scheduler.post(.natKnown, to: id)
        case .after(let delay): scheduler.post(.natKnown, to: id, after: delay)
        case nil: break
        }
        if decision == .requestPunch {
            control.requestPunch(from: member.index, with: link.peer.index)
        }
    }

    private func startPunch(_ id: MachineID) {
        guard links[id] != nil, let context = scheduler.machine(id)?.context else { return }
        let attempt = links[id]!.connection.attempt(context.punchBursts, bothReachable: context.bothReachable, now: network.clock.now,
                                                    fresh: network.random.next())
        if let start = attempt.start {
            begin(id, session: start.session)
            if start.requestPunch { control.requestPunch(from: member.index, with: links[id]!.peer.index) }
        }
        member.driver.burst(links[id]!.peer.index)
    }

    private func begin(_ id: MachineID, session: UInt64) {
        guard let link = links[id] else { return }
        let peer = link.peer.index
        network.note("\(member.name) punches \(link.peer.name) in session \(session)")
        member.driver.start(peer, PunchSession(key: link.pairKey, session: session, candidates: link.candidates,
                                               learned: member.driver.learned(peer)),
                            observed: link.observed)
    }

    /// The control server announced a punch with `peer` at `startMillis`.
    func punchAnnounced(with peer: Int, startMillis: UInt64) {
        guard let id = machines[peer], let link = links[id], let state = scheduler.machine(id)?.state else { return }
        let joining = links[id]!.connection.coordination.announce(startMillis: startMillis, state: state,
                                                                   pinned: member.driver.pinned(peer) != nil,
                                                                   hasRelay: link.connection.relayUse.grant != nil,
                                                                   wall: network.clock.wallMilliseconds, now: network.clock.now)
        switch joining {
        case .none:
            break
        case .detect:
            decideDirect(id)
        case .join(let session, let wait):
            begin(id, session: session)
            for packet in 0..<timings.punchPackets {
                scheduler.post(.punchTick, to: id, after: wait + timings.punchInterval * packet)
            }
        case .fire(let event, let wait):
            scheduler.post(event, to: id, after: wait)
        }
    }

    /// The control server's offers for the pair with `peer`; the relay answers an allocation after a round trip.
    func relaysOffered(with peer: Int, _ offers: [RelayOffer]) {
        guard let id = machines[peer], let state = scheduler.machine(id)?.state else { return }
        tryOffer(links[id]!.connection.relayUse.offered(offers, preferred: [], in: state), for: id)
    }

    private func tryOffer(_ next: RelayUse.Next, for id: MachineID) {
        switch next {
        case .ignore:
            return
        case .failed:
            scheduler.post(.relayFailed, to: id)
        case .allocate(let offer):
            guard let peer = links[id]?.peer.index else { return }
            control.allocate(offer, from: member.index, with: peer) { [weak self] grant in
                guard let self, links[id] != nil, let state = scheduler.machine(id)?.state else { return }
                guard let grant else {
                    guard RelayUse.states.contains(state) else { return }
                    return tryOffer(links[id]!.connection.relayUse.next(), for: id)
                }
                // A grant that comes after the connection left the relay states is left alone, as the
                // agent does: it is the pair's allocation, which the peer may be using.
                switch links[id]!.connection.relayUse.granted(grant, in: state) {
                case .unwanted:
                    return
                case .kept:
                    latch(grant)
                case .ready:
                    network.note("\(member.name): relay granted for \(links[id]!.peer.name) at \(grant.endpoint)")
                    scheduler.post(.relayReady, to: id)
                }
            }
        }
    }

    // MARK: Records

    /// The first STUN answer of a detection: a new public endpoint is announced at once.
    private func mappedEndpointLearned(_ endpoint: Endpoint) {
        let record = MemberRecord(key: announced.key, nat: announced.nat,
                                  candidates: [Candidate(.local, member.local), Candidate(.reflexive, endpoint)])
        guard record != announced else { return }
        announce(record)
        react { PeerConnection.publicEndpointLearned(in: $0) }
    }

    /// A detection finished: its answer is announced, and the peers' connections learn it.
    private func detected() {
        let record = Self.record(of: member)
        if record != announced { announce(record) }
        react { PeerConnection.natLearned(in: $0) }
    }

    private func announce(_ record: MemberRecord) {
        network.note("\(member.name) announces \(record.nat) at \(record.candidates.map { "\($0.endpoint)" }.joined(separator: ", "))")
        announced = record
        control.announce(record, from: member.index)
    }

    /// The control server's answer came from a new public address of this member's.
    func observedChanged(to address: IPAddress) { observed = address }

    /// The control server sent `peer`'s record again.
    func recordChanged(_ record: MemberRecord, of peer: Int) {
        guard let id = machines[peer], let old = links[id]?.record, let state = scheduler.machine(id)?.state else { return }
        links[id]!.record = record
        react(PeerConnection.recordChanged(from: old, to: record, in: state), for: id)
    }

    /// Every peer's connection reacts to a change on this side, in the order of the machines.
    private func react(_ reaction: (PeerState) -> PeerConnection.Reaction) {
        for id in links.keys.sorted() {
            if let state = scheduler.machine(id)?.state { react(reaction(state), for: id) }
        }
    }

    /// Carries out what the connection decided on a change around it, as the agent's `react` does
    /// (the port fan aside).
    private func react(_ reaction: PeerConnection.Reaction, for id: MachineID) {
        guard let link = links[id] else { return }
        switch reaction {
        case .none:
            break
        case .fire(let event):
            scheduler.post(event, to: id)
        case .decide:
            decideDirect(id)
        case .punchAgain, .punchCandidates:
            member.driver.add(candidates: link.candidates, for: link.peer.index)
            member.driver.burst(link.peer.index)
        }
    }

    // MARK: WireGuard

    private func point(_ id: MachineID, at endpoint: Endpoint) {
        guard let link = links[id] else { return }
        let peer = link.peer.index
        apply(links[id]!.connection.point(at: endpoint, before: wireGuard.reading(peer), wall: network.clock.wallMilliseconds,
                                          localKeyIsSmaller: link.localKeyIsSmaller), to: peer)
    }

    private func takeTurn(_ id: MachineID) {
        guard let link = links[id] else { return }
        let reading = link.connection.path == nil ? nil : wireGuard.reading(link.peer.index)
        apply(links[id]!.connection.takeTurn(reading), to: link.peer.index)
    }

    private func readWireGuard(_ id: MachineID) {
        guard let link = links[id], let machine = scheduler.machine(id) else { return }
        let now = network.clock.now
        let reading = wireGuard.reading(link.peer.index)
        let facts = PeerConnection.ReadFacts(state: machine.state, path: machine.context.path, wall: network.clock.wallMilliseconds,
                                             now: now, secondInState: (now - link.stateSince) / 1_000_000_000,
                                             localKeyIsSmaller: link.localKeyIsSmaller, timings: timings, forwarded: false)
        let relay = SimulatedControl.relayAddress
        let result = links[id]!.connection.read(reading, facts) { $0.address == .v4(relay) }
        if case .setEndpoint(let endpoint) = result.steps.first {
            network.note("\(member.name): WireGuard roamed to the relay, \(link.peer.name)'s direct endpoint \(endpoint) set again")
        }
        if result.lost {
            network.note("\(member.name): path to \(link.peer.name) lost (silence \(result.silence), handshake \(result.handshakeAge.map { "\($0)" } ?? "none"))")
        }
        apply(result.steps, to: link.peer.index)
        scheduler.updateContext(of: id) {
            $0.handshakeAge = result.handshakeAge
            $0.pathConfirmed = result.confirmed
            $0.pathLost = result.lost
        }
        scheduler.post(.wireGuardRead, to: id)
    }

    private func transitioned(_ record: TransitionRecord<PeerChart>) {
        guard !record.transition.isInternal, let link = links[record.machine] else { return }
        links[record.machine]!.stateSince = record.time
        let path = scheduler.machine(record.machine)?.context.path ?? .none
        steps.append(Step(peer: link.peer.index, at: record.time, from: record.transition.from, event: record.transition.event,
                          to: record.transition.to, path: path))
        network.note("\(member.name)→\(link.peer.name): \(record.transition.from) --\(record.transition.event)--> \(record.transition.to) (\(path))")
        guard scheduler.machine(record.machine)?.isFinished == true else { return }
        links[record.machine] = nil
        machines[link.peer.index] = nil
        scheduler.remove(record.machine)
    }
}
