import Control
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
        case .setDirectEndpoint:
            // The punch's pinned address — it answered this side's own nonce — through a fan port: forwarded.
            if let pinned = driver.pinned(id), let socket = driver.pinnedFanSocket(id) {
                forward(id, through: socket, to: pinned)
            } else if let pinned = driver.pinned(id) {
                pointWireGuard(id, at: pinned)
            }
        case .allocateRelay:
            // Nothing the old path did counts for the new one.
            links[id]?.endpoint = nil
            links[id]?.endpointSetAt = clock.wallMilliseconds
            if scheduler.machine(id)?.state == .relaying, link.relay != nil, link.earlyRelay {
                // The early relay granted while detecting or punching carries on.
                links[id]?.earlyRelay = false
                scheduler.post(.relayReady, to: id)
                return
            }
            links[id]?.relay = nil
            links[id]?.earlyRelay = false
            links[id]?.offers = []
            // The control server sends the offers to both members: for the early relay the member with
            // the smaller key asks alone; in Relaying both ask (one may have lost the other's request).
            let early = scheduler.machine(id)?.state != .relaying
            guard configuration.relaysEnabled, !early || (memberKey < link.record.key && clock.now >= earlyRelaysPausedUntil) else { return }
            control.requestRelay(with: link.record.key)
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
            if let grant = link.relay {
                relays.release(grant)
                logger.info("relay released", metadata: ["peer": "\(link.record.key)", "relay": "\(grant.service)"])
            }
            links[id]?.relay = nil
        case .enableKeepalive:
            // From 0 to the interval: WireGuard sends a keepalive (or a handshake) on the new path at once.
            // The member with the smaller key goes first: two handshake initiations crossing each other
            // leave both sides waiting as responders until a retry 5 s later.
            let key = link.publicKey
            if memberKey < link.record.key { kick(key) } else {
                alarms.schedule(after: Self.keepaliveLag) { [unowned(unsafe) self] in
                    self.takeTurn(id)
                    self.kick(key)
                }
            }
        case .readHandshake:
            // Relayed, each read latches again: the relay follows a NAT rebinding only on a latch.
            if let grant = link.relay, link.endpoint == grant.endpoint { _ = try? port.send(relays.latch(grant), to: grant.endpoint) }
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

    /// Detecting: a pair of symmetric NATs goes to the relay at once; any other pair punches at the
    /// instant the control server announces (the member with the smaller key asks for it). Only when
    /// the peer is symmetric does the agent wait for its own NAT type (detection decides in about 1 s;
    /// the early relay carries traffic meanwhile). A pair of open or full-cone NATs needs no
    /// coordinated instant: both punch at once, and each goes Direct on the ACK of its own PUNCH
    /// (a peer's claimed endpoint is used only once it answered).
    func decideDirect(_ id: MachineID) {
        guard scheduler.machine(id)?.state == .detecting, let link = links[id] else { return }
        guard !(natType == .unknown && detector.isRunning && link.record.nat == .symmetric) else { return }
        // Punches go to the public endpoints of both WireGuard ports: wait until each side's first STUN
        // answer is known to the party (the chart's detection timeout punches anyway).
        guard reflexive != nil || !detector.isRunning, link.record.candidates.contains(where: { $0.kind == .reflexive }) else { return }
        let plan = DirectPathPlan(local: natType, remote: link.record.nat)
        guard plan.directPossible else {
            scheduler.updateContext(of: id) { $0.directPossible = false }
            scheduler.post(.natKnown, to: id)
            return
        }
        scheduler.updateContext(of: id) { $0.directPossible = true }
        if Self.admitsAnyone(natType), Self.admitsAnyone(link.record.nat), link.reachable != nil {
            scheduler.updateContext(of: id) { $0.bothReachable = true }
            scheduler.post(.natKnown, to: id)
        } else if let coordinated = link.coordinated, coordinated.at >= clock.now - 1_000_000_000 {
            scheduler.post(.natKnown, to: id, after: .nanoseconds(max(0, coordinated.at - clock.now)))
        } else if memberKey < link.record.key, !link.punchRequested {
            links[id]?.punchRequested = true
            logger.debug("punch requested", metadata: ["peer": "\(link.record.key)"])
            control.requestPunch(with: link.record.key)
        }
    }

    /// Punching entered: a round's first attempt starts a session — the announced one when its
    /// instant is now, else a fresh one while asking the control server to bring the peer in.
    func startPunch(_ id: MachineID) {
        guard let link = links[id], let machine = scheduler.machine(id) else { return }
        if machine.context.punchBursts <= 1 {
            links[id]?.punchRequested = false
            if let coordinated = link.coordinated, abs(coordinated.at - clock.now) < 2_000_000_000 {
                begin(id, session: coordinated.session, coordinated: true)
            } else if machine.context.bothReachable {
                // No filter to open on either side: no instant to agree on, the PUNCHes cross at once.
                begin(id, session: Crypto.randomUInt64(), coordinated: false)
            } else {
                begin(id, session: Crypto.randomUInt64(), coordinated: false)
                control.requestPunch(with: link.record.key)
            }
            links[id]?.coordinated = nil
        }
        // Port-restricted ↔ symmetric: every attempt sprays fresh guesses at the symmetric side's fan.
        if machine.context.punchBursts > 1 { guessPorts(id) }
        driver.burst(id)
    }

    /// A new punch session toward the peer's candidates. Port-restricted ↔ symmetric: the
    /// port-restricted side sprays guessed ports of the peer's public address, the symmetric side
    /// punches from a fan of extra ports (see `Agent+PortFan`).
    private func begin(_ id: MachineID, session: UInt64, coordinated: Bool) {
        guard let link = links[id] else { return }
        links[id]?.session = session
        links[id]?.sessionCoordinated = coordinated
        let learned = driver.learned(id)
        logger.debug("punch session", metadata: ["peer": "\(link.record.key)", "session": "\(session)", "coordinated": "\(coordinated)",
                                                 "candidates": "\(link.candidates.count)", "learned": "\(learned.count)"])
        driver.start(id, PunchSession(key: link.pairKey, session: session, candidates: link.candidates, learned: learned),
                     observed: link.observed?.address)
        closeFan(id)
        guessPorts(id)
    }

    /// The member with the larger key, when its turn comes. With no handshake yet the smaller key's
    /// initiation was lost (or, with an endpoint set earlier, crossed one this side's own traffic had
    /// started, and both sides wait as responders) — WireGuard would retry after 5 s (REKEY_TIMEOUT),
    /// and holds back any handshake until then: added afresh with the endpoint, the peer initiates at
    /// once (a responder's handshake completes within a round trip of its initiation, well inside the
    /// lag). With a handshake, an endpoint held back (see `pointWireGuard`) is set now.
    private func takeTurn(_ id: MachineID) {
        guard let link = links[id], let endpoint = link.endpoint else { return }
        let deferred = link.endpointDeferred
        links[id]?.endpointDeferred = false
        device = nil
        guard let peer = readDevice()?.peer(link.publicKey) else { return }
        if peer.lastHandshake == nil {
            logger.debug("no handshake yet: peer added afresh", metadata: ["peer": "\(link.record.key)"])
            setEndpoint(link, endpoint, afresh: true)
        } else if deferred, peer.endpoint != endpoint {
            configurePeer(PeerChange(publicKey: link.publicKey, updateOnly: true, endpoint: endpoint))
        }
        device = nil
    }

    /// Persistent keepalive from 0 to the interval: WireGuard sends a keepalive at once, or starts a
    /// handshake when it has no session with the peer.
    private func kick(_ key: Key) {
        configurePeer(PeerChange(publicKey: key, updateOnly: true, persistentKeepalive: 0))
        configurePeer(PeerChange(publicKey: key, updateOnly: true,
                                 persistentKeepalive: max(1, UInt16(clamping: configuration.timings.persistentKeepalive.components.seconds))))
    }

    /// Direct and not confirmed yet: WireGuard's packets from the peer were lost, or never sent — a
    /// peer that confirmed its side sends nothing but persistent keepalives, and none of those while
    /// it receives ours (a packet either way resets WireGuard's keepalive timer). A handshake settles
    /// it: re-added, the peer initiates at once (no 5 s hold), and the answer confirms the path (the
    /// other side's too, when it waits as well). Seconds 2 and 6 in Direct for the member with the
    /// smaller key, 4 and 8 for the larger: two initiations crossing would leave both sides waiting as
    /// responders, so the sides ask at different times unless they went Direct 2 s apart.
    private func askForHandshake(_ id: MachineID) {
        guard let link = links[id], let endpoint = link.endpoint, !link.endpointDeferred else { return }
        let second = (clock.now - link.stateSince) / 1_000_000_000
        guard (memberKey < link.record.key ? [2, 6] : [4, 8]).contains(second) else { return }
        logger.debug("direct path not confirmed: handshake asked", metadata: ["peer": "\(link.record.key)", "second": "\(second)"])
        setEndpoint(link, endpoint, afresh: true)
        kick(link.publicKey)
        // A new WireGuard peer counts from 0.
        links[id]?.receivedAtSet = 0
        device = nil
    }

    /// Open and full-cone NATs let in datagrams from anyone to the public endpoint.
    static func admitsAnyone(_ nat: NATType) -> Bool { nat == .open || nat == .fullCone }

    /// How long early relays are not asked for after a relay refused one.
    static let earlyRelayPause: Duration = .seconds(30)
    /// When the latch of a new relay grant is sent again (a lost one would leave the early relay idle).
    static let latchRepeats: [Duration] = [.milliseconds(300), .seconds(1)]
    /// How long the member with the larger key waits before its first keepalive on a new path.
    static let keepaliveLag: Duration = .milliseconds(300)

    /// The control server announced a coordinated punch with `record`'s member at `startMillis`.
    func punchAnnounced(_ record: MemberRecord, startMillis: UInt64) {
        guard let id = upsert(record) else { return }
        // The start is the server's wall clock, at most 5 s ahead (a start further off, or past, is now).
        let now = UInt64(max(0, clock.wallMilliseconds))
        let wait = Int64(startMillis > now ? min(5_000, startMillis - now) : 0)
        let at = clock.now + wait * 1_000_000
        links[id]?.coordinated = (startMillis, at)
        logger.debug("punch announced", metadata: ["peer": "\(record.key)", "in_ms": "\(wait)",
                                                   "state": "\(scheduler.machine(id).map { "\($0.state)" } ?? "?")"])
        switch scheduler.machine(id)?.state {
        case .detecting:
            decideDirect(id)
        case .punching where driver.pinned(id) == nil && links[id]?.isReplaced(byPunchAt: startMillis) == true:
            // Join the announced punch at its instant, with a whole burst: the attempt's own ticks
            // may all have gone (a single PUNCH per candidate lost under loss was the whole round).
            links[id]?.coordinated = nil
            begin(id, session: startMillis, coordinated: true)
            for packet in 0..<configuration.timings.punchPackets {
                scheduler.post(.punchTick, to: id, after: .milliseconds(wait) + configuration.timings.punchInterval * packet)
            }
        case .keepalive:
            // The peer lost its path (or upgrades from a relay): punch with it.
            scheduler.post(.endpointChanged, to: id, after: .milliseconds(wait))
        case .relaying where links[id]?.relay == nil:
            // Waiting for a relay that has not come: the peer punches now, so punch with it (the
            // relay timeout's edge, taken early).
            scheduler.post(.relayTimeout, to: id, after: .milliseconds(wait))
        default:
            break
        }
    }

    // MARK: WireGuard

    /// Points the WireGuard peer at `endpoint` with the member's addresses as allowed IPs.
    func pointWireGuard(_ id: MachineID, at endpoint: Endpoint) {
        guard let link = links[id] else { return }
        if let forwarder = link.forwarder, forwarder.inside.local != endpoint { stopForwarding(id) }
        // WireGuard may have roamed there on its own (not pointed there by the agent): an authenticated
        // packet came from the endpoint before this side pinned it (the peer pinned first). Then the
        // path is proven already, and data received before the change counts.
        device = nil
        let current = readDevice()?.peer(link.publicKey)
        let roamed = link.endpoint != endpoint && current?.endpoint == endpoint
        // A peer that never had an endpoint nor a handshake: the member with the larger key leaves
        // WireGuard without one until its turn (`enableKeepalive`, 300 ms later). The smaller key's
        // initiation comes first and is answered without an endpoint of this side's own, while this
        // side's traffic cannot start a second initiation that would cross it (both sides would wait
        // as responders). The smaller key's side adds the peer afresh: a packet routed to it before may
        // have made WireGuard start a handshake that could not leave, and hold back every handshake
        // toward the peer for 5 s (REKEY_TIMEOUT). It has no session to lose.
        let fresh = current.map { $0.endpoint == nil && $0.lastHandshake == nil } ?? false
        links[id]?.endpointDeferred = fresh && memberKey > link.record.key
        if links[id]?.endpointDeferred != true { setEndpoint(link, endpoint, afresh: fresh) }
        device = nil
        links[id]?.endpoint = endpoint
        links[id]?.endpointSetAt = clock.wallMilliseconds
        // The counter as read before the change: the peer, turning to this path at the same moment,
        // may have sent its one packet on it already (a peer added afresh counts from 0).
        links[id]?.receivedAtSet = roamed || fresh ? 0 : current?.rxBytes ?? 0
        reinstallRoutes([id])
    }

    /// Gives WireGuard the peer's endpoint and allowed IPs; `afresh` removes the peer first (a new
    /// WireGuard peer holds back no handshake and initiates at once).
    private func setEndpoint(_ link: PeerLink, _ endpoint: Endpoint, afresh: Bool) {
        if afresh { configurePeer(PeerChange(publicKey: link.publicKey, remove: true)) }
        configurePeer(PeerChange(publicKey: link.publicKey, endpoint: endpoint, replaceAllowedIPs: true, allowedIPs: allowedIPs(link.record)))
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
        var underlay = [configuration.control.address] + configuration.stun.map { $0.address } + configuration.preferredRelays.map { $0.address }
            + relayAddresses
        for (other, link) in links {
            underlay += Self.publicEndpoints(link.record).map { $0.address }
            if other != id { held += link.allowedIPs.map { ("\(link.record.key)", $0) } }
        }
        return RoutePolicy(interfaceName: configuration.interfaceName, ownAddresses: configuration.addresses, kernelRoutes: kernel,
                           held: held, underlay: underlay)
    }

    func configurePeer(_ change: PeerChange) {
        do { try backend.setPeer(configuration.interfaceName, change) } catch {
            logger.error("configuring WireGuard failed", metadata: ["error": "\(error)"])
        }
    }

    /// Liveness from WireGuard itself: the last handshake, and whether the receive counter grew.
    func readWireGuard(_ id: MachineID) {
        guard let key = links[id]?.publicKey, let machine = scheduler.machine(id) else { return }
        // A working tunnel's tick tolerates a read 2 s old (silence counts in tens of seconds); a path
        // waiting for confirmation wants a fresh one.
        let maxAge: Duration = machine.state == .keepalive ? .seconds(2) : .milliseconds(200)
        let peer = readDevice(maxAge: maxAge)?.peer(key)
        if let peer, machine.state == .direct || machine.state == .keepalive && machine.context.path == .direct {
            keepDirect(id, peer)
        }
        guard let link = links[id] else { return }
        let now = clock.now
        links[id]?.wireGuard = peer
        if let peer, peer.rxBytes != link.received {
            links[id]?.received = peer.rxBytes
            links[id]?.receivedChangedAt = now
        }
        let wallSeconds = clock.wallMilliseconds / 1000
        let handshakeAge = peer?.lastHandshake.map { Duration.seconds(max(0, wallSeconds - $0.seconds)) }
        // A handshake since the path was set confirms it; so does what WireGuard received from the path
        // since (its endpoint follows the last authenticated packet): data while a session exists (one
        // moved to a new path does not handshake again for up to two minutes), or, with no session yet,
        // the peer's initiation — this side answered it, and its handshake completes only with the
        // peer's first packet, which may be lost while the initiator, complete, sends nothing for 25 s.
        // Only what came over the chosen path counts: WireGuard's endpoint is the source of the latest
        // packet it authenticated, so a handshake made through the relay after the switch leaves it there.
        var confirmed = false
        if let peer, peer.endpoint == link.endpoint {
            let receivedHere = peer.rxBytes > link.receivedAtSet
            if let handshake = peer.lastHandshake {
                confirmed = handshake.seconds * 1000 + handshake.nanoseconds / 1_000_000 >= link.endpointSetAt
                    || receivedHere && handshakeAge! < configuration.timings.staleHandshake
            } else {
                confirmed = receivedHere
            }
        }
        if !confirmed, scheduler.machine(id)?.state == .direct { askForHandshake(id) }
        let silence = Duration.nanoseconds(now - (links[id]?.receivedChangedAt ?? now))
        scheduler.updateContext(of: id) {
            $0.handshakeAge = handshakeAge
            $0.pathConfirmed = confirmed
            $0.receiveSilence = silence
        }
        scheduler.post(.wireGuardRead, to: id)
    }

    /// On the direct path, WireGuard stays on it. WireGuard follows the source of the latest packet
    /// it authenticates: a packet that crossed the relay before the switch and arrives after it takes
    /// WireGuard back to the relay, and each side, receiving from the relay, keeps sending to it. Such
    /// an endpoint is set back to the direct one at once (what came before counts for nothing); any
    /// other move is the peer's own (a NAT rebinding), and the path follows it.
    private func keepDirect(_ id: MachineID, _ peer: WireGuard.Peer) {
        guard let link = links[id], let chosen = link.endpoint, !link.endpointDeferred, link.forwarder == nil,
              let current = peer.endpoint, current != chosen else { return }
        guard isRelay(current, of: link) else {
            if scheduler.machine(id)?.state == .keepalive { links[id]?.endpoint = current }
            return
        }
        logger.notice("WireGuard roamed to the relay: direct endpoint set again",
                      metadata: ["peer": "\(link.record.key)", "relay": "\(current)", "endpoint": "\(chosen)"])
        configurePeer(PeerChange(publicKey: link.publicKey, updateOnly: true, endpoint: chosen))
        device = nil
        links[id]?.endpointSetAt = clock.wallMilliseconds
        links[id]?.receivedAtSet = peer.rxBytes
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
            let state = scheduler.machine(id)?.state
            if old.addresses != record.addresses { reinstallRoutes([id] + peersRefused(besides: id)) }
            switch state {
            case .discovering where !record.candidates.isEmpty:
                scheduler.post(.candidatesKnown, to: id)
            case .detecting where old.nat != record.nat || old.candidates != record.candidates:
                decideDirect(id)
            case .punching where old.nat != record.nat:
                guessPorts(id)
                driver.burst(id)
            case .keepalive where Self.publicEndpoints(old) != Self.publicEndpoints(record):
                logger.info("peer's public endpoint changed", metadata: ["peer": "\(record.key)"])
                scheduler.post(.endpointChanged, to: id)
            default:
                break
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

    static func publicEndpoints(_ record: MemberRecord) -> Set<Endpoint> {
        Set(record.candidates.filter { $0.kind != .local }.map { $0.endpoint })
    }

    // MARK: Relays

    /// The control server's relay offers for the pair: preferred relays first, then its order (by load).
    /// The states that ask for a relay: Relaying, and Detecting and Punching for the early relay.
    static let relayStates: Set<PeerState> = [.detecting, .punching, .relaying]
    /// The relay addresses remembered (the control server offers at most eight at a time).
    static let relayAddressLimit = 16

    func relaysOffered(_ key: MemberKey, _ offers: [RelayOffer]) {
        for offer in offers where !relayAddresses.contains(offer.service.address) {
            if relayAddresses.count == Self.relayAddressLimit { relayAddresses.removeFirst() }
            relayAddresses.append(offer.service.address)
        }
        guard let id = machines[key], let state = scheduler.machine(id)?.state, Self.relayStates.contains(state),
              links[id]?.relay == nil else { return }
        let preferred = configuration.preferredRelays.compactMap { service in offers.first { $0.service == service } }
        links[id]?.offers = preferred + offers.filter { !configuration.preferredRelays.contains($0.service) }
        tryNextOffer(id)
    }

    private func tryNextOffer(_ id: MachineID) {
        guard let link = links[id] else { return }
        guard let offer = link.offers.first else {
            scheduler.post(.relayFailed, to: id)
            return
        }
        links[id]?.offers.removeFirst()
        relays.allocate(offer) { [unowned(unsafe) self] grant in
            guard self.links[id] != nil, let state = self.scheduler.machine(id)?.state, Self.relayStates.contains(state) else { return }
            if let grant {
                self.links[id]?.relay = grant
                self.links[id]?.earlyRelay = state != .relaying
                self.logger.info("relay allocated", metadata: ["peer": "\(link.record.key)", "relay": "\(grant.service)", "endpoint": "\(grant.endpoint)"])
                self.scheduler.post(.relayReady, to: id)
            } else {
                self.logger.warning("relay did not grant an allocation", metadata: ["peer": "\(link.record.key)", "relay": "\(offer.service)"])
                self.earlyRelaysPausedUntil = self.clock.now + Self.earlyRelayPause.nanoseconds
                self.tryNextOffer(id)
            }
        }
    }

    // MARK: Transitions

    func transitioned(_ record: TransitionRecord<PeerChart>) {
        guard !record.transition.isInternal else { return }
        links[record.machine]?.stateSince = record.time
        switch record.transition.to {
        case .closed:
            if let link = links.removeValue(forKey: record.machine) { machines[link.record.key] = nil }
            scheduler.remove(record.machine)
        case .punching where record.transition.from == .keepalive:
            // A lost path may mean a new public address: learn it again (at most every 30 s).
            if let started = detector.startedAt, clock.now - started > Duration.seconds(30).nanoseconds { detector.start(servers: configuration.stun) }
        default:
            break
        }
        // The attempt is over: its fan closes (a fan port that won carries on in a forwarder).
        if record.transition.from == .punching, record.transition.to != .punching { closeFan(record.machine) }
    }
}
