import EventLoop
import Net
import Output
import Punch
import Rendezvous
import StateChart
import Time

/// Runs every peer's machine and connection, and turns their decisions into I/O: the agent runs
/// it on its sockets and WireGuard, the simulation on its models — the same code, decision for
/// decision. It decides nothing itself: each rule is ``PeerConnection``'s; it carries the facts
/// in (the machine's state, what WireGuard and the servers said) and the answers out (`IO`).
public final class PeerExecutor<IO: PeerIO>: ActionExecutor {
    public typealias Spec = PeerChart

    public private(set) var scheduler: Scheduler<PeerExecutor<IO>>!
    public private(set) var links: [MachineID: PeerLink<IO.IOState>] = [:]
    public private(set) var machines: [MemberKey: MachineID] = [:]
    /// The addresses of the relays the control server offered, oldest first (at most
    /// `relayAddressLimit`): a WireGuard endpoint there is relayed, whatever the machine chose.
    public private(set) var relayAddresses: [IPAddress] = []
    /// The chart's timings; a change reaches every machine.
    public var timings: PeerTimings {
        didSet { for id in links.keys { scheduler.updateContext(of: id) { $0.timings = timings } } }
    }
    private unowned(unsafe) let io: IO
    private let clock: any TimeSource
    private let localPrivateKey: [UInt8], localKey: MemberKey
    /// Until when no early relay is asked for: a relay refused one (its quota for the party is
    /// full), and a party of 50 asking for one per pair again and again only loads the servers.
    private var earlyRelaysPausedUntil: Nanoseconds = 0

    /// How long early relays are not asked for after a relay refused one.
    public static var earlyRelayPause: Duration { .seconds(30) }
    /// When the latch of a new relay grant is sent again (a lost one would leave the early relay idle).
    public static var latchRepeats: [Duration] { [.milliseconds(300), .seconds(1)] }
    /// The relay addresses remembered (the control server offers at most eight at a time).
    public static var relayAddressLimit: Int { 16 }

    /// The executor of the member whose WireGuard keys are `privateKey` and `publicKey`.
    public init(io: IO, privateKey: [UInt8], publicKey: MemberKey, timings: PeerTimings, clock: any TimeSource, logger: Logger) {
        self.io = io
        self.clock = clock
        self.timings = timings
        localPrivateKey = privateKey
        localKey = publicKey
        scheduler = Scheduler(chart: PeerChart.chart(timings), clock: clock, executor: self, logger: logger)
        scheduler.onTransition = { [unowned(unsafe) self] record in self.transitioned(record) }
    }

    /// The machine and link of `key`'s member.
    public func link(_ key: MemberKey) -> PeerLink<IO.IOState>? { machines[key].flatMap { links[$0] } }

    /// Changes the I/O's state of a peer.
    public func update(_ id: MachineID, _ change: (inout IO.IOState) -> Void) {
        if links[id] != nil { change(&links[id]!.io) }
    }

    // MARK: Actions

    public func execute(_ action: PeerAction, for id: MachineID) {
        guard let link = links[id] else { return }
        switch action {
        case .requestCandidates:
            // The record came with the registry's push; a member without candidates gets them with its next update.
            if !link.record.candidates.isEmpty { scheduler.post(.candidatesKnown, to: id) }
        case .detectNAT:
            decideDirect(id)
        case .startPunch:
            startPunch(id)
        case .sendPunch:
            io.burst(id)
        case .endPunch:
            io.endPunch(id)
        case .rediscoverNAT:
            // At most every 30 s.
            if let started = io.detectionStartedAt, clock.now - started > Duration.seconds(30).nanoseconds { io.rediscover() }
        case .setDirectEndpoint:
            // The endpoint WireGuard found while relayed; else the punch's pinned address — it answered
            // this side's own nonce — or a fan port's forwarder to it.
            if let found = links[id]!.connection.takeFound() {
                point(id, at: found)
            } else if let pinned = io.pinned(id), let endpoint = io.directEndpoint(id, pinned: pinned) {
                point(id, at: endpoint)
            }
        case .allocateRelay:
            // Nothing the old path did counts for the new one.
            links[id]!.connection.path = nil
            guard let state = scheduler.machine(id)?.state else { return }
            switch links[id]!.connection.relayUse.allocate(in: state, enabled: io.relaysEnabled, localKeyIsSmaller: link.localKeyIsSmaller,
                                                           earlyPaused: clock.now < earlyRelaysPausedUntil) {
            case .reuse: scheduler.post(.relayReady, to: id)
            case .request: io.requestRelay(with: link.record.key)
            case .none: break
            }
        case .setRelayEndpoint:
            guard let grant = link.relay else { return }
            // The latch goes first: the relay forwards nothing from this side's WireGuard port before it
            // latched the port, and with it delivers the peer's first handshake, held for this side.
            io.latch(grant)
            point(id, at: grant.endpoint)
            // Twice more, in case the first is lost: Detecting and Punching read WireGuard (which
            // latches again) only once they are done, and until then the early relay carries nothing.
            for delay in Self.latchRepeats {
                io.after(delay) { [unowned(unsafe) self] in
                    guard let current = self.links[id]?.relay, current == grant else { return }
                    self.io.latch(grant)
                }
            }
        case .releaseRelay:
            // Given back, not just forgotten: a relay still forwarding could carry a late packet that
            // takes WireGuard back to it.
            if let grant = links[id]!.connection.relayUse.release() {
                io.release(grant)
                io.note(.relayReleased(service: grant.service), for: link.record.key)
            }
        case .enableKeepalive:
            if let lag = PeerConnection.keepaliveTurn(localKeyIsSmaller: link.localKeyIsSmaller) {
                io.after(lag) { [unowned(unsafe) self] in self.takeTurn(id) }
            } else {
                io.apply([.kick], to: id)
            }
        case .readHandshake:
            // Relayed, each read latches again: the relay follows a NAT rebinding only on a latch.
            if let grant = link.relay, link.path?.endpoint == grant.endpoint { io.latch(grant) }
            readWireGuard(id)
        case .removePeer:
            io.remove(id)
        }
    }

    // MARK: Detecting and punching

    /// Detecting: what `PunchCoordination.detect` decides, carried out.
    private func decideDirect(_ id: MachineID) {
        guard let link = links[id], let state = scheduler.machine(id)?.state else { return }
        let facts = PunchCoordination.Facts(localNAT: io.announcedNAT, detecting: io.isDetecting, reflexiveKnown: io.reflexiveKnown,
                                            peerNAT: link.record.nat, peerReflexiveKnown: link.reachable != nil,
                                            localKeyIsSmaller: link.localKeyIsSmaller, withoutNAT: io.reachableWithoutNAT(link))
        let decision = links[id]!.connection.detect(facts, in: state, now: clock.now)
        var natKnown: PeerContext.NATKnown?
        scheduler.updateContext(of: id) { natKnown = $0.decided(decision) }
        switch natKnown {
        case .now: scheduler.post(.natKnown, to: id)
        case .after(let delay): scheduler.post(.natKnown, to: id, after: delay)
        case nil: break
        }
        if decision == .requestPunch {
            io.note(.punchRequested, for: link.record.key)
            io.requestPunch(with: link.record.key)
        }
    }

    /// Punching entered: a round's first attempt starts a session (`PunchCoordination.start`); later
    /// attempts of port-restricted ↔ symmetric spray fresh guesses at the symmetric side's fan.
    private func startPunch(_ id: MachineID) {
        guard links[id] != nil, let context = scheduler.machine(id)?.context else { return }
        let attempt = links[id]!.connection.attempt(context.punchBursts, bothReachable: context.bothReachable, now: clock.now,
                                                    fresh: io.randomUInt64())
        if let start = attempt.start {
            begin(id, session: start.session, coordinated: start.coordinated)
            if start.requestPunch { io.requestPunch(with: links[id]!.record.key) }
        }
        if attempt.guessAgain { guessPorts(id) }
        io.burst(id)
    }

    /// A new punch session toward the peer's candidates and what the last one learned.
    private func begin(_ id: MachineID, session: UInt64, coordinated: Bool) {
        guard let link = links[id] else { return }
        let learned = io.learned(id)
        _ = links[id]!.connection.takeFound()
        io.note(.punchSession(session: session, coordinated: coordinated, candidates: link.candidates.count, learned: learned.count),
                for: link.record.key)
        io.punch(id, PunchSession(key: link.pairKey, session: session, candidates: link.candidates, learned: learned),
                 observed: link.observed?.address)
        guessPorts(id)
    }

    /// Port-restricted ↔ symmetric (``PortPredictionRole``): the port-restricted side sprays guesses
    /// at the peer's public address, the symmetric side opens its fan. Called when an attempt or a
    /// session starts, and when either NAT type becomes known during one (detection often ends after
    /// the punch began). A fan toward the same endpoint stays open across sessions until the attempt
    /// ends: the peer's guesses may already have hit its ports (a session joined 160 ms after this
    /// side's own closed the ports the peer had just pinned), and new ones would start from nothing.
    private func guessPorts(_ id: MachineID) {
        guard let link = links[id] else { return }
        let fan = io.fanTarget(id)
        switch portPredictionRole(link) {
        case .spray(let address):
            if fan != nil { io.endPunch(id) }
            io.spray(id, at: address)
        case .fan(let target) where fan != target:
            if fan != nil { io.endPunch(id) }
            io.openFan(id, toward: target)
        case .fan:
            break
        case .none:
            if fan != nil { io.endPunch(id) }
        }
    }

    /// Which side of port prediction this one is toward the peer.
    private func portPredictionRole(_ link: PeerLink<IO.IOState>) -> PortPredictionRole {
        PortPredictionRole(local: io.announcedNAT, remote: link.record.nat, observed: link.observed?.address,
                           reachable: link.reachable, withoutNAT: io.reachableWithoutNAT(link))
    }

    /// The control server announced a coordinated punch with `record`'s member at `startMillis`.
    public func punchAnnounced(_ record: MemberRecord, startMillis: UInt64) {
        guard let id = upsert(record), let state = scheduler.machine(id)?.state else { return }
        let joining = links[id]!.connection.coordination.announce(startMillis: startMillis, state: state, pinned: io.pinned(id) != nil,
                                                                   hasRelay: links[id]!.relay != nil, wall: clock.wallMilliseconds,
                                                                   now: clock.now)
        io.note(.punchAnnounced(state: state, session: startMillis), for: record.key)
        switch joining {
        case .none:
            break
        case .detect:
            decideDirect(id)
        case .join(let session, let wait):
            begin(id, session: session, coordinated: true)
            for packet in 0..<timings.punchPackets {
                scheduler.post(.punchTick, to: id, after: wait + timings.punchInterval * packet)
            }
        case .fire(let event, let wait):
            scheduler.post(event, to: id, after: wait)
        }
    }

    /// The punch driver pinned the peer (it answered this side's nonce).
    public func pinned(_ id: MachineID) { scheduler.post(.punchAcked, to: id) }

    // MARK: WireGuard

    /// Points the peer's WireGuard peer at `endpoint`, after a fresh read: WireGuard may have roamed
    /// there on its own (an authenticated packet came from the endpoint before this side pinned it:
    /// the peer pinned first); then the path is proven already.
    private func point(_ id: MachineID, at endpoint: Endpoint) {
        guard let link = links[id] else { return }
        let before = io.read(id, maxAge: .zero)
        io.apply(links[id]!.connection.point(at: endpoint, before: before, wall: clock.wallMilliseconds,
                                             localKeyIsSmaller: link.localKeyIsSmaller), to: id)
        io.pointed(id, at: endpoint)
    }

    /// The member with the larger key, when its turn comes (``PeerConnection/takeTurn(_:)``).
    private func takeTurn(_ id: MachineID) {
        guard let link = links[id] else { return }
        let reading = link.path == nil ? nil : io.read(id, maxAge: .zero)
        let steps = links[id]!.connection.takeTurn(reading)
        if steps.first == .remove { io.note(.addedAfresh, for: link.record.key) }
        io.apply(steps, to: id)
    }

    /// Liveness from WireGuard itself: the last handshake, and whether the receive counter grew; what
    /// the connection changes on the read (``PeerConnection/read(_:_:isRelay:)``) is made.
    private func readWireGuard(_ id: MachineID) {
        guard let link = links[id], let machine = scheduler.machine(id) else { return }
        let plan = PeerConnection.readPlan(in: machine.state, path: machine.context.path)
        let reading = io.read(id, maxAge: plan.maxAge)
        let now = clock.now
        var facts = PeerConnection.ReadFacts(state: machine.state, path: machine.context.path, wall: clock.wallMilliseconds, now: now,
                                             secondInState: (now - link.stateSince) / 1_000_000_000,
                                             localKeyIsSmaller: link.localKeyIsSmaller, timings: timings, forwarded: io.forwarded(id))
        if case .spray = portPredictionRole(link) { facts.peerFans = true }
        let result = links[id]!.connection.read(reading, facts) { self.isRelay($0, of: link) }
        if case .setEndpoint(let endpoint) = result.steps.first {
            io.note(.roamedToRelay(relay: reading?.endpoint, direct: endpoint), for: link.record.key)
        }
        if result.steps.contains(.remove) { io.note(.handshakeAsked(second: facts.secondInState), for: link.record.key) }
        if result.lost { io.note(.pathLost(silence: result.silence, handshakeAge: result.handshakeAge), for: link.record.key) }
        if let found = result.found { io.note(.directFound(found), for: link.record.key) }
        io.apply(result.steps, to: id)
        scheduler.updateContext(of: id) {
            $0.handshakeAge = result.handshakeAge
            $0.pathConfirmed = result.confirmed
            $0.pathLost = result.lost
        }
        scheduler.post(.wireGuardRead, to: id)
        // Found the direct path as a pin does: Keepalive (or Punching, when stale) takes it to Direct.
        if result.found != nil { scheduler.post(.punchAcked, to: id) }
    }

    /// Whether `endpoint` is at a relay: the pair's own allocation, or any relay the control server offered.
    public func isRelay(_ endpoint: Endpoint, of link: PeerLink<IO.IOState>) -> Bool {
        link.relay?.endpoint.address == endpoint.address || relayAddresses.contains(endpoint.address)
    }

    // MARK: Members

    /// The control server says a member joined, changed or left.
    public func memberChanged(_ event: ControlMessage.MemberEvent, _ record: MemberRecord) {
        if event == .left {
            if let id = machines[record.key] { scheduler.post(.peerLeft, to: id) }
            return
        }
        upsert(record)
    }

    /// Stores a member's record, starting its peer machine on first sight; reacts to changes.
    @discardableResult
    public func upsert(_ record: MemberRecord) -> MachineID? {
        guard record.key != localKey else { return nil }
        if let id = machines[record.key], let old = links[id]?.record {
            links[id]!.record = record
            io.recordChanged(id, from: old)
            if let state = scheduler.machine(id)?.state {
                let reaction = PeerConnection.recordChanged(from: old, to: record, in: state)
                if reaction == .fire(.endpointChanged) { io.note(.endpointChanged, for: record.key) }
                react(reaction, for: id)
            }
            return id
        }
        guard let pairKey = PairKey(localPrivateKey: localPrivateKey, localPublicKey: localKey.bytes, remotePublicKey: record.key.bytes) else {
            io.note(.unusableKey, for: record.key)
            return nil
        }
        // The link is there before the machine's first action (Discovering asks for the candidates);
        // WireGuard knows the peer from the start (no endpoint yet): a handshake the peer sends as soon
        // as it pins is accepted, and WireGuard learns the endpoint from it.
        let state = io.meet(record)
        return scheduler.add(name: "\(record.key)", context: PeerContext(timings: timings)) { id in
            links[id] = PeerLink(record: record, pairKey: pairKey, machine: id, localKeyIsSmaller: localKey < record.key, now: clock.now,
                                 io: state)
            machines[record.key] = id
            io.joined(id)
        }
    }

    /// This side's public endpoint became known (the first STUN answer): every connection reacts.
    public func publicEndpointLearned() { reactAll { PeerConnection.publicEndpointLearned(in: $0) } }

    /// This side's NAT type (or its port mapping) changed: every connection reacts.
    public func natLearned() { reactAll { PeerConnection.natLearned(in: $0) } }

    private func reactAll(_ reaction: (PeerState) -> PeerConnection.Reaction) {
        for id in links.keys.sorted() {
            if let state = scheduler.machine(id)?.state { react(reaction(state), for: id) }
        }
    }

    /// Carries out what the connection decided on a change around it.
    private func react(_ reaction: PeerConnection.Reaction, for id: MachineID) {
        switch reaction {
        case .none:
            break
        case .fire(let event):
            scheduler.post(event, to: id)
        case .decide:
            decideDirect(id)
        case .punchAgain, .punchCandidates:
            if let link = links[id] { io.addCandidates(link.candidates, for: id) }
            if reaction == .punchAgain { guessPorts(id) }
            io.burst(id)
        }
    }

    // MARK: Relays

    /// The control server's relay offers for the pair with `key`'s member: remembered as relays, and
    /// tried as `RelayUse.offered` orders them.
    public func relaysOffered(_ key: MemberKey, _ offers: [RelayOffer]) {
        for offer in offers where !relayAddresses.contains(offer.service.address) {
            if relayAddresses.count == Self.relayAddressLimit { relayAddresses.removeFirst() }
            relayAddresses.append(offer.service.address)
        }
        guard let id = machines[key], let state = scheduler.machine(id)?.state else { return }
        tryOffer(links[id]!.connection.relayUse.offered(offers, preferred: io.preferredRelays, in: state), for: id)
    }

    /// Asks the relay `next` names, and the next offer when it refuses or does not answer.
    private func tryOffer(_ next: RelayUse.Next, for id: MachineID) {
        guard let key = links[id]?.record.key else { return }
        switch next {
        case .ignore:
            return
        case .failed:
            scheduler.post(.relayFailed, to: id)
        case .allocate(let offer):
            io.allocate(offer) { [unowned(unsafe) self] grant in
                guard self.links[id] != nil, let state = self.scheduler.machine(id)?.state else { return }
                guard let grant else {
                    self.io.note(.relayRefused(service: offer.service), for: key)
                    self.earlyRelaysPausedUntil = self.clock.now + Self.earlyRelayPause.nanoseconds
                    guard RelayUse.states.contains(state) else { return }
                    return self.tryOffer(self.links[id]!.connection.relayUse.next(), for: id)
                }
                switch self.links[id]!.connection.relayUse.granted(grant, in: state) {
                case .unwanted:
                    // A grant that comes after the connection left the relay states is left alone: it
                    // is the pair's allocation, which the peer may be using.
                    return
                case .kept:
                    // The allocation held, on the same port (the second of both members' offers, the
                    // peer asking anew, or a restarted relay giving out its ports in the same order):
                    // latched at once, with the newer token's key.
                    self.io.latch(grant)
                case .ready:
                    self.io.note(.relayAllocated(service: grant.service, endpoint: grant.endpoint), for: key)
                    self.scheduler.post(.relayReady, to: id)
                }
            }
        }
    }

    // MARK: Transitions

    private func transitioned(_ record: TransitionRecord<PeerChart>) {
        guard let link = links[record.machine] else { return }
        if !record.transition.isInternal { links[record.machine]!.stateSince = record.time }
        io.transitioned(record, of: links[record.machine]!)
        guard !record.transition.isInternal, scheduler.machine(record.machine)?.isFinished == true else { return }
        links[record.machine] = nil
        machines[link.record.key] = nil
        scheduler.remove(record.machine)
    }
}
