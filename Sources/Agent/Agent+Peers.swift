import Control
import DNS
import EventLoop
import Output
import Net
import Peer
import Punch
import Rendezvous
import StateChart
import WireGuard
import Time
import STUN

/// The peer machines' actions, and what the control server says about members.
extension Agent {
    func execute(_ action: PeerAction, for id: MachineID) {
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
            driver.burst(id)
        case .endPunch:
            closeFan(id)
        case .rediscoverNAT:
            // At most every 30 s.
            if let started = detector.startedAt, clock.now - started > Duration.seconds(30).nanoseconds { rediscover() }
        case .setDirectEndpoint:
            // The punch's pinned address — it answered this side's own nonce — through a fan port: forwarded.
            if let pinned = driver.pinned(id), let socket = driver.pinnedFanSocket(id) {
                forward(id, through: socket, to: pinned)
            } else if let pinned = driver.pinned(id) {
                pointWireGuard(id, at: pinned)
            }
        case .allocateRelay:
            // Nothing the old path did counts for the new one.
            links[id]?.connection.path = nil
            guard let state = scheduler.machine(id)?.state else { return }
            let allocation = links[id]!.connection.relayUse.allocate(in: state, enabled: configuration.relaysEnabled,
                                                          localKeyIsSmaller: memberKey < link.record.key,
                                                          earlyPaused: clock.now < earlyRelaysPausedUntil)
            switch allocation {
            case .reuse: scheduler.post(.relayReady, to: id)
            case .request: control.requestRelay(with: link.record.key)
            case .none: break
            }
        case .setRelayEndpoint:
            if let grant = link.relay {
                // The latch goes first: the relay forwards nothing from this side's WireGuard port before it
                // latched the port, and with it delivers the peer's first handshake, held for this side.
                _ = try? port.send(relays.latch(grant), to: grant.endpoint)
                pointWireGuard(id, at: grant.endpoint)
                // Twice more, in case the first is lost: Detecting and Punching read WireGuard (which
                // latches again) only once they are done, and until then the early relay carries nothing.
                for delay in Self.latchRepeats {
                    alarms.schedule(after: delay) { [unowned(unsafe) self] in
                        guard let current = self.links[id]?.relay, current == grant else { return }
                        _ = try? self.port.send(self.relays.latch(grant), to: grant.endpoint)
                    }
                }
            }
        case .releaseRelay:
            // Given back, not just forgotten: a relay still forwarding could carry a late packet that
            // takes WireGuard back to it.
            if let grant = links[id]!.connection.relayUse.release() {
                relays.release(grant)
                logger.info("relay released", metadata: ["peer": "\(link.record.key)", "relay": "\(grant.service)"])
            }
        case .enableKeepalive:
            if let lag = PeerConnection.keepaliveTurn(localKeyIsSmaller: memberKey < link.record.key) {
                alarms.schedule(after: lag) { [unowned(unsafe) self] in self.takeTurn(id) }
            } else {
                apply([.kick], to: link)
            }
        case .readHandshake:
            // Relayed, each read latches again: the relay follows a NAT rebinding only on a latch.
            if let grant = link.relay, link.path?.endpoint == grant.endpoint { _ = try? port.send(relays.latch(grant), to: grant.endpoint) }
            readWireGuard(id)
        case .removePeer:
            configurePeer(PeerChange(publicKey: link.publicKey, remove: true))
            releasePrefixes(id)
            driver.stop(id)
            closeFan(id)
            stopForwarding(id)
        }
    }

    // MARK: Detecting and punching

    /// Detecting: what `PunchCoordination.detect` decides, carried out.
    func decideDirect(_ id: MachineID) {
        guard let link = links[id], let state = scheduler.machine(id)?.state else { return }
        let facts = PunchCoordination.Facts(localNAT: announcedNAT, detecting: detector.isRunning, reflexiveKnown: reflexive != nil,
                                            peerNAT: link.record.nat, peerReflexiveKnown: link.reachable != nil,
                                            localKeyIsSmaller: memberKey < link.record.key,
                                            withoutNAT: reachableWithoutNAT(link))
        let decision = links[id]!.connection.detect(facts, in: state, now: clock.now)
        var natKnown: PeerContext.NATKnown?
        scheduler.updateContext(of: id) { natKnown = $0.decided(decision) }
        switch natKnown {
        case .now: scheduler.post(.natKnown, to: id)
        case .after(let delay): scheduler.post(.natKnown, to: id, after: delay)
        case nil: break
        }
        if decision == .requestPunch {
            logger.debug("punch requested", metadata: ["peer": "\(link.record.key)"])
            control.requestPunch(with: link.record.key)
        }
    }

    /// Whether a path without NAT to the peer is likely (``DirectPathPlan``): it reaches the
    /// Internet from this side's public address — where the control server saw this side's
    /// messages come from (else its first STUN answer) against where it saw the peer's — or both
    /// sides have global IPv6 candidates (unique local ones reach only their own site).
    func reachableWithoutNAT(_ link: PeerLink) -> Bool {
        if let own = (lastObserved ?? reflexive)?.address, own == link.observed?.address { return true }
        func ipv6(_ candidates: [Candidate]) -> Bool { candidates.contains { if case .v6(let v6) = $0.endpoint.address { v6.isGlobal } else { false } } }
        return ipv6(control.configuration.candidates) && ipv6(link.record.candidates)
    }

    /// Punching entered: a round's first attempt starts a session (`PunchCoordination.start`); later
    /// attempts of port-restricted ↔ symmetric spray fresh guesses at the symmetric side's fan.
    func startPunch(_ id: MachineID) {
        guard links[id] != nil, let context = scheduler.machine(id)?.context else { return }
        let attempt = links[id]!.connection.attempt(context.punchBursts, bothReachable: context.bothReachable, now: clock.now,
                                                    fresh: Crypto.randomUInt64())
        if let start = attempt.start {
            begin(id, session: start.session, coordinated: start.coordinated)
            if start.requestPunch { control.requestPunch(with: links[id]!.record.key) }
        }
        if attempt.guessAgain { guessPorts(id) }
        driver.burst(id)
    }

    /// A new punch session toward the peer's candidates. Port-restricted ↔ symmetric: the
    /// port-restricted side sprays guessed ports of the peer's public address, the symmetric side
    /// punches from a fan of extra ports (see `Agent+PortFan`).
    private func begin(_ id: MachineID, session: UInt64, coordinated: Bool) {
        guard let link = links[id] else { return }
        let learned = driver.learned(id)
        logger.debug("punch session", metadata: ["peer": "\(link.record.key)", "session": "\(session)", "coordinated": "\(coordinated)",
                                                 "candidates": "\(link.candidates.count)", "learned": "\(learned.count)"])
        driver.start(id, PunchSession(key: link.pairKey, session: session, candidates: link.candidates, learned: learned),
                     observed: link.observed?.address)
        closeFan(id)
        guessPorts(id)
    }

    /// The member with the larger key, when its turn comes (``PeerConnection/takeTurn(_:)``).
    private func takeTurn(_ id: MachineID) {
        guard let link = links[id] else { return }
        device = nil
        let reading = link.path == nil ? nil : readDevice()?.peer(link.publicKey).map(Self.reading)
        let steps = links[id]!.connection.takeTurn(reading)
        if steps.first == .remove { logger.debug("no handshake yet: peer added afresh", metadata: ["peer": "\(link.record.key)"]) }
        apply(steps, to: link)
        device = nil
    }

    /// How long early relays are not asked for after a relay refused one.
    static let earlyRelayPause: Duration = .seconds(30)
    /// When the latch of a new relay grant is sent again (a lost one would leave the early relay idle).
    static let latchRepeats: [Duration] = [.milliseconds(300), .seconds(1)]

    /// The control server announced a coordinated punch with `record`'s member at `startMillis`.
    func punchAnnounced(_ record: MemberRecord, startMillis: UInt64) {
        guard let id = upsert(record), let state = scheduler.machine(id)?.state else { return }
        let joining = links[id]!.connection.coordination.announce(startMillis: startMillis, state: state, pinned: driver.pinned(id) != nil,
                                                       hasRelay: links[id]!.relay != nil, wall: clock.wallMilliseconds, now: clock.now)
        logger.debug("punch announced", metadata: ["peer": "\(record.key)", "state": "\(state)", "session": "\(startMillis)"])
        switch joining {
        case .none:
            break
        case .detect:
            decideDirect(id)
        case .join(let session, let wait):
            begin(id, session: session, coordinated: true)
            for packet in 0..<configuration.timings.punchPackets {
                scheduler.post(.punchTick, to: id, after: wait + configuration.timings.punchInterval * packet)
            }
        case .fire(let event, let wait):
            scheduler.post(event, to: id, after: wait)
        }
    }

    // MARK: WireGuard

    /// Points the WireGuard peer at `endpoint` with the member's addresses as allowed IPs.
    func pointWireGuard(_ id: MachineID, at endpoint: Endpoint) {
        guard let link = links[id] else { return }
        if let forwarder = link.forwarder, forwarder.inside.local != endpoint { stopForwarding(id) }
        // A fresh read: WireGuard may have roamed there on its own (an authenticated packet came from
        // the endpoint before this side pinned it: the peer pinned first); then the path is proven already.
        device = nil
        let before = readDevice()?.peer(link.publicKey).map(Self.reading)
        apply(links[id]!.connection.point(at: endpoint, before: before, wall: clock.wallMilliseconds,
                                          localKeyIsSmaller: memberKey < link.record.key), to: link)
        device = nil
        reinstallRoutes([id])
    }

    /// Queues the connection's changes of the peer's WireGuard peer, in order.
    private func apply(_ steps: [WireGuardStep], to link: PeerLink) {
        for step in steps {
            switch step {
            case .remove:
                configurePeer(PeerChange(publicKey: link.publicKey, remove: true))
            case .point(let endpoint):
                configurePeer(PeerChange(publicKey: link.publicKey, endpoint: endpoint, replaceAllowedIPs: true,
                                         allowedIPs: allowedIPs(link.record)))
            case .setEndpoint(let endpoint):
                configurePeer(PeerChange(publicKey: link.publicKey, updateOnly: true, endpoint: endpoint))
            case .kick:
                let interval = max(1, UInt16(clamping: configuration.timings.persistentKeepalive.components.seconds))
                configurePeer(PeerChange(publicKey: link.publicKey, updateOnly: true, persistentKeepalive: 0))
                configurePeer(PeerChange(publicKey: link.publicKey, updateOnly: true, persistentKeepalive: interval))
            case .probe:
                probe(link)
            }
        }
    }

    /// The discard port (RFC 863): a probe's datagram asks nothing of the peer's host.
    static let probePort: UInt16 = 9

    /// Sends one datagram through the tunnel to the peer's overlay address (its first allowed
    /// address of a whole prefix, /32 or /128), from a socket of its own, closed at once.
    private func probe(_ link: PeerLink) {
        guard let host = link.allowedIPs.first(where: { prefix in
            if case .v4 = prefix.address { prefix.length == 32 } else { prefix.length == 128 }
        })?.address,
              let socket = try? UDPSocket(binding: Endpoint(.unspecified(host.family), 0)) else { return }
        _ = try? socket.send([0], to: Endpoint(host, Self.probePort))
    }

    /// The member's prefixes WireGuard may take as the peer's allowed IPs: those `installRoutes`
    /// accepted last (it runs before every change of them).
    func allowedIPs(_ record: MemberRecord) -> [IPPrefix] {
        machines[record.key].flatMap { links[$0]?.allowedIPs } ?? []
    }

    /// Decides the member's prefixes with `RoutePolicy` over one read of the kernel's routes, keeps
    /// the accepted ones as the peer's allowed IPs (see `allowedIPs`), and makes the peer's routes
    /// through the interface the accepted ones: adds those missing (never replacing a route; one
    /// through the interface already, left by an earlier run, is used as it is), removes only those
    /// it added. Each refused prefix is logged once, with its reason. When the kernel's routes
    /// cannot be read, everything stays as it was. Returns whether the allowed IPs changed.
    @discardableResult
    func installRoutes(_ id: MachineID) -> Bool {
        guard let link = links[id] else { return false }
        let name = configuration.interfaceName
        let kernel: [KernelRoute]
        do { kernel = try RouteNetlink.kernelRoutes() } catch {
            logger.error("could not read the kernel's routes: the peer's allowed IPs and routes stay as they were",
                         metadata: ["peer": "\(link.record.key)", "error": "\(error)"])
            return false
        }
        let decision = routePolicy(for: id, kernel).decide(link.record.addresses)
        for (index, prefix) in link.record.addresses.enumerated() where link.record.addresses.firstIndex(of: prefix) == index {
            guard let reason = decision.refused[prefix], reason != link.refused[prefix] else { continue }
            logger.warning("prefix refused", metadata: ["peer": "\(link.record.key)", "prefix": "\(prefix)", "reason": "\(reason)"])
        }
        let present = kernel.filter { $0.interfaceName == name && $0.table == KernelRoute.mainTable }.map { $0.prefix }
        var routes: [IPPrefix] = []
        for route in link.routes {
            if decision.routes.contains(route) {
                if present.contains(route) { routes.append(route) }  // else deleted by someone else: added again below
                continue
            }
            do { try backend.removeRoute(name, route) } catch {
                guard error.kind != .notFound else { continue }  // deleted by someone else: not the agent's any more
                logger.warning("could not remove a route", metadata: ["peer": "\(link.record.key)", "route": "\(route)", "error": "\(error)"])
                routes.append(route)
            }
        }
        for route in decision.routes where !routes.contains(route) && !present.contains(route) {
            do {
                try backend.addRoute(name, route)
                routes.append(route)
            } catch {
                logger.warning("could not add a route", metadata: ["peer": "\(link.record.key)", "route": "\(route)", "error": "\(error)"])
            }
        }
        links[id]?.routes = routes
        links[id]?.refused = decision.refused
        links[id]?.allowedIPs = decision.allowedIPs
        return decision.allowedIPs != link.allowedIPs
    }

    /// `installRoutes` for each of `ids` in turn, and WireGuard told the allowed IPs that changed.
    func reinstallRoutes(_ ids: [MachineID]) {
        for id in ids where installRoutes(id) {
            guard let link = links[id] else { continue }
            configurePeer(PeerChange(publicKey: link.publicKey, updateOnly: true, replaceAllowedIPs: true, allowedIPs: link.allowedIPs))
        }
    }

    /// The peers with a refused prefix but `id`, in the order they came: a prefix `id` held may be
    /// free now.
    private func peersRefused(besides id: MachineID) -> [MachineID] {
        links.filter { $0.key != id && !$0.value.refused.isEmpty }.keys.sorted()
    }

    /// The peer is gone: removes the routes the agent added for it, and gives what it held to the
    /// peers that were refused it.
    private func releasePrefixes(_ id: MachineID) {
        guard let link = links[id] else { return }
        for route in link.routes { try? backend.removeRoute(configuration.interfaceName, route) }
        links[id]?.routes = []
        links[id]?.allowedIPs = []
        links[id]?.refused = [:]
        reinstallRoutes(peersRefused(besides: id))
    }

    /// The policy for `id`'s prefixes: the other peers' allowed IPs are theirs, and the addresses
    /// the agent reaches outside the tunnel stay outside.
    private func routePolicy(for id: MachineID, _ kernel: [KernelRoute]) -> RoutePolicy {
        var held: [(peer: String, prefix: IPPrefix)] = []
        var underlay = ([configuration.control] + configuration.stun + configuration.preferredRelays).compactMap { names.endpoint($0)?.address }
            + relayAddresses
        for (other, link) in links {
            underlay += PeerConnection.publicEndpoints(link.record).map { $0.address }
            if other != id { held += link.allowedIPs.map { ("\(link.record.key)", $0) } }
        }
        return RoutePolicy(interfaceName: configuration.interfaceName, ownAddresses: configuration.addresses, kernelRoutes: kernel,
                           held: held, underlay: underlay)
    }

    /// Queues a change of a WireGuard peer; `applyPeerChanges` makes the round's changes at once.
    func configurePeer(_ change: PeerChange) {
        pendingPeerChanges.append(change)
    }

    /// Applies the queued peer changes as one device change, in order; when that fails, one by one,
    /// so that one bad change does not hold back the others.
    func applyPeerChanges() {
        guard !pendingPeerChanges.isEmpty else { return }
        let changes = pendingPeerChanges
        pendingPeerChanges = []
        device = nil
        do { try backend.configure(configuration.interfaceName, DeviceChange(peers: changes)) } catch {
            for change in changes {
                do { try backend.setPeer(configuration.interfaceName, change) } catch {
                    logger.error("configuring WireGuard failed", metadata: ["peer": "\(change.publicKey.base64)", "error": "\(error)"])
                }
            }
        }
    }

    /// Liveness from WireGuard itself: the last handshake, and whether the receive counter grew; what
    /// the connection changes on the read (``PeerConnection/read(_:_:isRelay:)``) is made.
    func readWireGuard(_ id: MachineID) {
        guard let link = links[id], let machine = scheduler.machine(id) else { return }
        let plan = PeerConnection.readPlan(in: machine.state, path: machine.context.path)
        let peer = readDevice(maxAge: plan.maxAge)?.peer(link.publicKey)
        let now = clock.now
        links[id]?.wireGuard = peer
        let facts = PeerConnection.ReadFacts(state: machine.state, path: machine.context.path, wall: clock.wallMilliseconds, now: now,
                                             secondInState: (now - link.stateSince) / 1_000_000_000,
                                             localKeyIsSmaller: memberKey < link.record.key,
                                             timings: configuration.timings, forwarded: link.forwarder != nil)
        let result = links[id]!.connection.read(peer.map(Self.reading), facts) { self.isRelay($0, of: link) }
        if case .setEndpoint(let endpoint) = result.steps.first {
            logger.notice("WireGuard roamed to the relay: direct endpoint set again", metadata: [
                "peer": "\(link.record.key)", "relay": "\(peer?.endpoint.map { "\($0)" } ?? "?")", "endpoint": "\(endpoint)"])
        }
        if result.steps.contains(.remove) {
            logger.debug("direct path not confirmed: handshake asked", metadata: ["peer": "\(link.record.key)", "second": "\(facts.secondInState)"])
        }
        if result.lost {
            logger.info("path lost: a probe unanswered", metadata: [
                "peer": "\(link.record.key)", "silence_s": "\(result.silence.components.seconds)",
                "handshake_age_s": "\(result.handshakeAge.map { "\($0.components.seconds)" } ?? "none")"])
        }
        apply(result.steps, to: link)
        if !result.steps.isEmpty { device = nil }
        scheduler.updateContext(of: id) {
            $0.handshakeAge = result.handshakeAge
            $0.pathConfirmed = result.confirmed
            $0.pathLost = result.lost
        }
        scheduler.post(.wireGuardRead, to: id)
    }

    /// What the connection's decisions need of a WireGuard peer as read.
    static func reading(_ peer: WireGuard.Peer) -> WireGuardReading {
        WireGuardReading(endpoint: peer.endpoint, lastHandshake: peer.lastHandshake.map { $0.seconds * 1000 + $0.nanoseconds / 1_000_000 },
                         received: peer.rxBytes)
    }

    /// Whether `endpoint` is at a relay: the pair's own allocation, or any relay the control server offered.
    func isRelay(_ endpoint: Endpoint, of link: PeerLink) -> Bool {
        link.relay?.endpoint.address == endpoint.address || relayAddresses.contains(endpoint.address)
    }

    // MARK: Members

    func memberChanged(_ event: ControlMessage.MemberEvent, _ record: MemberRecord) {
        if event == .left {
            if let id = machines[record.key] { scheduler.post(.peerLeft, to: id) }
            return
        }
        upsert(record)
    }

    /// Stores a member's record, starting its peer machine on first sight; reacts to changes.
    @discardableResult
    func upsert(_ record: MemberRecord) -> MachineID? {
        guard record.key != memberKey else { return nil }
        if let id = machines[record.key], let old = links[id]?.record {
            links[id]?.record = record
            if old.addresses != record.addresses { reinstallRoutes([id] + peersRefused(besides: id)) }
            if let state = scheduler.machine(id)?.state {
                let reaction = PeerConnection.recordChanged(from: old, to: record, in: state)
                if reaction == .fire(.endpointChanged) { logger.info("peer's public endpoint changed", metadata: ["peer": "\(record.key)"]) }
                react(reaction, for: id)
            }
            return id
        }
        guard let pairKey = PairKey(localPrivateKey: configuration.privateKey.bytes, localPublicKey: publicKey.bytes,
                                    remotePublicKey: record.key.bytes) else {
            logger.warning("member with an unusable key ignored", metadata: ["peer": "\(record.key)"])
            return nil
        }
        // The machine starts in Discovering; its first action finds no link yet and waits for this post.
        let id = scheduler.add(name: "\(record.key)", context: PeerContext(timings: configuration.timings))
        let link = PeerLink(record: record, pairKey: pairKey, machine: id, now: clock.now)
        links[id] = link
        machines[record.key] = id
        // WireGuard knows the peer from the start (no endpoint yet): a handshake the peer sends as soon as
        // it pins is accepted, and WireGuard learns the endpoint from it.
        installRoutes(id)
        configurePeer(PeerChange(publicKey: link.publicKey, replaceAllowedIPs: true, allowedIPs: allowedIPs(record)))
        if !record.candidates.isEmpty { scheduler.post(.candidatesKnown, to: id) }
        return id
    }

    /// Carries out what the connection decided on a change around it.
    func react(_ reaction: PeerConnection.Reaction, for id: MachineID) {
        switch reaction {
        case .none:
            break
        case .fire(let event):
            scheduler.post(event, to: id)
        case .decide:
            decideDirect(id)
        case .punchAgain, .punchCandidates:
            if let link = links[id] { driver.add(candidates: link.candidates, for: id) }
            if reaction == .punchAgain { guessPorts(id) }
            driver.burst(id)
        }
    }

    // MARK: Relays

    /// The relay addresses remembered (the control server offers at most eight at a time).
    static let relayAddressLimit = 16

    /// The control server's relay offers for the pair: remembered as relays, and tried as
    /// `RelayUse.offered` orders them.
    func relaysOffered(_ key: MemberKey, _ offers: [RelayOffer]) {
        for offer in offers where !relayAddresses.contains(offer.service.address) {
            if relayAddresses.count == Self.relayAddressLimit { relayAddresses.removeFirst() }
            relayAddresses.append(offer.service.address)
        }
        guard let id = machines[key], let state = scheduler.machine(id)?.state else { return }
        let next = links[id]!.connection.relayUse.offered(offers, preferred: configuration.preferredRelays.compactMap { names.endpoint($0) }, in: state)
        tryOffer(next, for: id)
    }

    /// Asks the relay `next` names, and the next offer when it refuses or does not answer.
    private func tryOffer(_ next: RelayUse.Next, for id: MachineID) {
        guard let link = links[id] else { return }
        switch next {
        case .ignore:
            return
        case .failed:
            scheduler.post(.relayFailed, to: id)
        case .allocate(let offer):
            relays.allocate(offer) { [unowned(unsafe) self] grant in
                guard self.links[id] != nil, let state = self.scheduler.machine(id)?.state else { return }
                if let grant {
                    switch self.links[id]!.connection.relayUse.granted(grant, in: state) {
                    case .unwanted:
                        return
                    case .kept:
                        // The allocation held, on the same port (the second of both members' offers, the
                        // peer asking anew, or a restarted relay giving out its ports in the same order):
                        // latched at once, with the newer token's key.
                        _ = try? self.port.send(self.relays.latch(grant), to: grant.endpoint)
                    case .ready:
                        self.logger.info("relay allocated", metadata: ["peer": "\(link.record.key)", "relay": "\(grant.service)", "endpoint": "\(grant.endpoint)"])
                        self.scheduler.post(.relayReady, to: id)
                    }
                } else {
                    self.logger.warning("relay did not grant an allocation", metadata: ["peer": "\(link.record.key)", "relay": "\(offer.service)"])
                    self.earlyRelaysPausedUntil = self.clock.now + Self.earlyRelayPause.nanoseconds
                    guard RelayUse.states.contains(state) else { return }
                    self.tryOffer(self.links[id]!.connection.relayUse.next(), for: id)
                }
            }
        }
    }

    // MARK: Transitions

    func transitioned(_ record: TransitionRecord<PeerChart>) {
        guard !record.transition.isInternal else { return }
        links[record.machine]?.stateSince = record.time
        guard scheduler.machine(record.machine)?.isFinished == true else { return }
        if let link = links.removeValue(forKey: record.machine) { machines[link.record.key] = nil }
        scheduler.remove(record.machine)
    }
}
