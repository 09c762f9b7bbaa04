import Control
import DNS
import EventLoop
import Output
import Net
import Peer
import Punch
import Relay
import Rendezvous
import StateChart
import WireGuard
import Time
import STUN

/// The agent as the peer executor's I/O: the punch driver and the fan on its sockets, WireGuard
/// through its backend, the control client and the relays. It decides nothing about a connection:
/// ``PeerExecutor`` and ``PeerConnection`` do.
extension Agent: PeerIO {
    // MARK: Members

    public func meet(_ record: MemberRecord) -> AgentPeer { AgentPeer(publicKey: Key(bytes: record.key.bytes)!) }

    public func joined(_ id: MachineID) {
        guard let link = links[id] else { return }
        installRoutes(id)
        configurePeer(PeerChange(publicKey: link.io.publicKey, replaceAllowedIPs: true, allowedIPs: allowedIPs(link.record)))
    }

    public func recordChanged(_ id: MachineID, from old: MemberRecord) {
        guard let link = links[id], old.addresses != link.record.addresses else { return }
        reinstallRoutes([id] + peersRefused(besides: id))
    }

    public func remove(_ id: MachineID) {
        guard let link = links[id] else { return }
        configurePeer(PeerChange(publicKey: link.io.publicKey, remove: true))
        releasePrefixes(id)
        driver.stop(id)
        closeFan(id)
        stopForwarding(id)
    }

    // MARK: This side

    public var isDetecting: Bool { detector.isRunning }
    public var reflexiveKnown: Bool { reflexive != nil }
    public var detectionStartedAt: Nanoseconds? { detector.startedAt }
    public var relaysEnabled: Bool { configuration.relaysEnabled }
    public var preferredRelays: [Endpoint] { configuration.preferredRelays.compactMap { names.endpoint($0) } }
    public func randomUInt64() -> UInt64 { Crypto.randomUInt64() }

    /// Whether a path without NAT to the member is likely (``DirectPathPlan``): it reaches the
    /// Internet from this side's public address — where the control server saw this side's
    /// messages come from (else its first STUN answer) against where it saw the peer's — or both
    /// sides have global IPv6 candidates (unique local ones reach only their own site).
    public func reachableWithoutNAT(_ link: PeerLink<AgentPeer>) -> Bool {
        if let own = (lastObserved ?? reflexive)?.address, own == link.observed?.address { return true }
        func ipv6(_ candidates: [Candidate]) -> Bool { candidates.contains { if case .v6(let v6) = $0.endpoint.address { v6.isGlobal } else { false } } }
        return ipv6(control.configuration.candidates) && ipv6(link.record.candidates)
    }

    // MARK: Punching

    public func punch(_ id: MachineID, _ session: PunchSession, observed: IPAddress?) { driver.start(id, session, observed: observed) }

    public func learned(_ id: MachineID) -> [Endpoint] { driver.learned(id) }
    public func pinned(_ id: MachineID) -> Endpoint? { driver.pinned(id) }
    public func burst(_ id: MachineID) { driver.burst(id) }
    public func addCandidates(_ candidates: [Endpoint], for id: MachineID) { driver.add(candidates: candidates, for: id) }
    public func endPunch(_ id: MachineID) { closeFan(id) }
    public func fanTarget(_ id: MachineID) -> Endpoint? { driver.fanTarget(id) }

    /// Pinned through a fan port: WireGuard sends to that port's forwarder.
    public func directEndpoint(_ id: MachineID, pinned: Endpoint) -> Endpoint? {
        guard let socket = driver.pinnedFanSocket(id) else { return pinned }
        return forward(id, through: socket, to: pinned)
    }

    // MARK: Servers

    public func requestPunch(with key: MemberKey) { control.requestPunch(with: key) }
    public func requestRelay(with key: MemberKey) { control.requestRelay(with: key) }
    public func allocate(_ offer: RelayOffer, _ granted: @escaping (RelayGrant?) -> Void) { relays.allocate(offer, done: granted) }
    public func latch(_ grant: RelayGrant) { _ = try? port.send(relays.latch(grant), to: grant.endpoint) }
    public func release(_ grant: RelayGrant) { relays.release(grant) }

    // MARK: Time and traces

    public func after(_ delay: Duration, _ body: @escaping () -> Void) { alarms.schedule(after: delay, body) }

    public func note(_ note: PeerNote, for key: MemberKey) {
        let peer: Logger.Metadata = ["peer": "\(key)"]
        switch note {
        case .punchRequested:
            logger.debug("punch requested", metadata: peer)
        case .punchSession(let session, let coordinated, let candidates, let learned):
            logger.debug("punch session", metadata: ["peer": "\(key)", "session": "\(session)", "coordinated": "\(coordinated)",
                                                 "candidates": "\(candidates)", "learned": "\(learned)"])
        case .punchAnnounced(let state, let session):
            logger.debug("punch announced", metadata: ["peer": "\(key)", "state": "\(state)", "session": "\(session)"])
        case .addedAfresh:
            logger.debug("no handshake yet: peer added afresh", metadata: peer)
        case .roamedToRelay(let relay, let direct):
            logger.notice("WireGuard roamed to the relay: direct endpoint set again",
                          metadata: ["peer": "\(key)", "relay": "\(relay.map { "\($0)" } ?? "?")", "endpoint": "\(direct)"])
        case .handshakeAsked(let second):
            logger.debug("direct path not confirmed: handshake asked", metadata: ["peer": "\(key)", "second": "\(second)"])
        case .pathLost(let silence, let handshakeAge):
            logger.info("path lost: a probe unanswered", metadata: [
                "peer": "\(key)", "silence_s": "\(silence.components.seconds)", "handshake_age_s": "\(handshakeAge.map { "\($0.components.seconds)" } ?? "none")"])
        case .directFound(let endpoint):
            logger.info("WireGuard found the direct path: the peer sends from it", metadata: ["peer": "\(key)", "endpoint": "\(endpoint)"])
        case .relayReleased(let service):
            logger.info("relay released", metadata: ["peer": "\(key)", "relay": "\(service)"])
        case .relayAllocated(let service, let endpoint):
            logger.info("relay allocated", metadata: ["peer": "\(key)", "relay": "\(service)", "endpoint": "\(endpoint)"])
        case .relayRefused(let service):
            logger.warning("relay did not grant an allocation", metadata: ["peer": "\(key)", "relay": "\(service)"])
        case .endpointChanged:
            logger.info("peer's public endpoint changed", metadata: peer)
        case .unusableKey:
            logger.warning("member with an unusable key ignored", metadata: peer)
        }
    }

    /// The scheduler logs every transition itself.
    public func transitioned(_ record: TransitionRecord<PeerChart>, of link: PeerLink<AgentPeer>) {}

    // MARK: WireGuard

    public func read(_ id: MachineID, maxAge: Duration) -> WireGuardReading? {
        guard let link = links[id] else { return nil }
        return readDevice(maxAge: maxAge)?.peer(link.io.publicKey).map(Self.reading)
    }

    /// Queues the connection's changes of the peer's WireGuard peer, in order.
    public func apply(_ steps: [WireGuardStep], to id: MachineID) {
        guard let link = links[id] else { return }
        for step in steps {
            switch step {
            case .remove:
                configurePeer(PeerChange(publicKey: link.io.publicKey, remove: true))
            case .point(let endpoint):
                configurePeer(PeerChange(publicKey: link.io.publicKey, endpoint: endpoint, replaceAllowedIPs: true,
                                         allowedIPs: allowedIPs(link.record)))
            case .setEndpoint(let endpoint):
                configurePeer(PeerChange(publicKey: link.io.publicKey, updateOnly: true, endpoint: endpoint))
            case .kick:
                let interval = max(1, UInt16(clamping: configuration.timings.persistentKeepalive.components.seconds))
                configurePeer(PeerChange(publicKey: link.io.publicKey, updateOnly: true, persistentKeepalive: 0))
                configurePeer(PeerChange(publicKey: link.io.publicKey, updateOnly: true, persistentKeepalive: interval))
            case .probe:
                probe(link)
            }
        }
    }

    /// A forwarder of another path closes; the routes are decided again; a datagram the fan port
    /// held for a new forwarder is delivered (after the change, so that WireGuard's receive counter
    /// grows on the new path).
    public func pointed(_ id: MachineID, at endpoint: Endpoint) {
        if let forwarder = links[id]?.io.forwarder {
            if forwarder.inside.local != endpoint {
                stopForwarding(id)
            } else if let early = driver.takeHeld(id, on: forwarder.outside) {
                forwarder.deliver(early)
            }
        }
        reinstallRoutes([id])
    }

    public func forwarded(_ id: MachineID) -> Bool { links[id]?.io.forwarder != nil }
}
