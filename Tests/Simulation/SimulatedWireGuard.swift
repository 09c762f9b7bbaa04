import Net
import Peer
import Time

/// WireGuard on a member's port, as far as the connection's decisions can tell: per peer, the
/// endpoint, the sessions, the handshake held back and retried, the counters and the timers.
///
/// What it models, after the WireGuard paper and wireguard-go's timers:
/// - An initiation (148 B) is answered with a response (92 B). The initiator's session is usable
///   on the response, which it answers with a keepalive; the responder's only once the initiator's
///   first packet arrives, and its last handshake is that moment.
/// - An initiation is held back for 5 s (REKEY_TIMEOUT) after the last one, even one that had no
///   endpoint to go to; one unanswered is sent again after 5 s and a random 0–333 ms, for 90 s
///   (REKEY_ATTEMPT_TIME). Data with no usable session waits for one. A peer has one handshake
///   state: the peer's initiation, consumed, replaces this side's own, whose response then matches
///   nothing.
/// - The initiator starts a new handshake on sending over a session 120 s old (REKEY_AFTER_TIME),
///   or 15 s after data it sent drew nothing back; no session is used after 180 s
///   (REJECT_AFTER_TIME).
/// - Any authenticated packet, handshakes included, counts as received and moves the endpoint to
///   its source (roaming). Persistent keepalive goes out after the interval with no packet either
///   way; a passive one 10 s after data received with nothing sent. Turning persistent keepalive
///   on sends one at once.
///
/// What it leaves out: cryptography (a packet is authentic when its session or handshake
/// identifier matches; a replayed initiation is dropped, a replayed data packet counted), cookies under load, the 2³ session slots beyond current, previous and next,
/// and byte-exact message sizes of data (payloads are counted as sent).
final class SimulatedWireGuard {
    /// The first byte of the model's messages (a real WireGuard message starts with 1…4).
    static let magic: UInt8 = 0xF7

    enum Kind: UInt8 {
        case initiation = 1, response = 2, data = 4
    }

    static let initiationSize = 148, responseSize = 92, keepaliveSize = 32
    /// What waited for a session, sent once it is there.
    static let stagedSize = 64
    static let rekeyTimeout: Nanoseconds = 5_000_000_000
    static let rekeyAttempt: Nanoseconds = 90_000_000_000
    static let rekeyAfter: Nanoseconds = 120_000_000_000
    static let rejectAfter: Nanoseconds = 180_000_000_000
    static let keepaliveTimeout: Nanoseconds = 10_000_000_000

    struct Session {
        var id: UInt64
        var initiator: Bool
        var created: Nanoseconds
    }

    /// One WireGuard peer.
    struct Peer {
        var endpoint: Endpoint?
        var current: Session?
        var previous: Session?
        /// The responder's session, until the initiator's first packet confirms it.
        var next: Session?
        /// The initiation waiting for its response, and when the attempts began.
        var handshake: UInt64?
        var attemptsBegan: Nanoseconds?
        var lastInitiation: Nanoseconds?
        var lastInitiationReceived: UInt64?
        var lastHandshakeWall: Int64?
        var received: UInt64 = 0
        var lastSent: Nanoseconds = .min / 2
        var lastReceived: Nanoseconds = .min / 2
        var persistentKeepalive: Nanoseconds = 0
        var lastDataSent: Nanoseconds = .min / 2
        var lastDataReceived: Nanoseconds = .min / 2
        /// Whether each lazy timer is pending.
        var keepaliveArmed = false, passiveArmed = false, newHandshakeArmed = false
        var staged = false
        /// Changes on every add: timers of an earlier incarnation do nothing.
        var generation: UInt64
    }

    let owner: Int
    private let socket: SimulatedSocket
    private unowned let network: SimulatedNetwork
    private(set) var peers: [Int: Peer] = [:]
    private var generations: UInt64 = 0
    /// Handshakes completed per peer over the run.
    private var handshakes: [Int: Int] = [:]
    /// The fan ports' forwarders (the agent's `LocalForwarder`), by their loopback port: the fan
    /// port, and the peer's endpoint it carries WireGuard's datagrams to and from.
    private var forwarders: [UInt16: (socket: SimulatedSocket, remote: Endpoint)] = [:]

    /// Handshakes completed with `peer` over the run.
    func handshakes(with peer: Int) -> Int { handshakes[peer, default: 0] }

    init(owner: Int, socket: SimulatedSocket, network: SimulatedNetwork) {
        self.owner = owner
        self.socket = socket
        self.network = network
    }

    // MARK: Configuration (what the executor's device changes do)

    /// Makes one change the connection decided.
    func apply(_ step: WireGuardStep, to peer: Int, keepalive: Duration) {
        switch step {
        case .remove:
            peers[peer] = nil
        case .point(let endpoint):
            if peers[peer] == nil {
                generations += 1
                peers[peer] = Peer(generation: generations)
            }
            peers[peer]!.endpoint = endpoint
        case .setEndpoint(let endpoint):
            peers[peer]?.endpoint = endpoint
        case .kick:
            guard peers[peer] != nil else { return }
            peers[peer]!.persistentKeepalive = keepalive.nanoseconds
            sendKeepalive(to: peer)
            armPersistentKeepalive(peer)
        case .probe:
            // The agent's datagram to the peer's overlay address: an IPv4 and UDP header and one byte.
            sendData(29, to: peer)
        }
    }

    /// Adds the peer with no endpoint (the agent's first change for a member).
    func add(_ peer: Int) {
        guard peers[peer] == nil else { return }
        generations += 1
        peers[peer] = Peer(generation: generations)
    }

    /// Forwards between WireGuard and `remote` through the fan port `socket`, as the agent's
    /// `LocalForwarder` does: returns the loopback endpoint WireGuard is to send to. What arrives on
    /// the port from `remote` comes to WireGuard from that endpoint; anything else is dropped.
    func forward(through socket: SimulatedSocket, to remote: Endpoint) -> Endpoint {
        let inside = Endpoint(.v4(IPv4Address(127, 0, 0, 1)), socket.port)
        forwarders[socket.port] = (socket, remote)
        socket.onReadable = { [unowned self, unowned socket] in
            while let datagram = try? socket.receive() {
                guard datagram.source == remote else { continue }
                _ = receive(PortDatagram(payload: datagram.payload, source: inside, destination: socket.local))
            }
        }
        return inside
    }

    /// Delivers `payload`, held by the fan port before its forwarder started, as the forwarder does.
    func deliver(_ payload: [UInt8], from inside: Endpoint) {
        guard let forwarder = forwarders[inside.port] else { return }
        _ = receive(PortDatagram(payload: payload, source: inside, destination: forwarder.socket.local))
    }

    /// Stops the forwarder of loopback `port`; returns its fan port, to close.
    func stopForwarding(_ port: UInt16) -> SimulatedSocket? { forwarders.removeValue(forKey: port)?.socket }

    /// What `wg show` would say of the peer.
    func reading(_ peer: Int) -> WireGuardReading? {
        peers[peer].map { WireGuardReading(endpoint: $0.endpoint, lastHandshake: $0.lastHandshakeWall, received: $0.received) }
    }

    // MARK: Sending

    /// The tunnel carries `bytes` of the member's traffic to `peer`.
    func sendData(_ bytes: Int, to peer: Int) {
        guard peers[peer] != nil else { return }
        send(.data, bytes: Self.keepaliveSize + bytes, to: peer)
        peers[peer]!.lastDataSent = network.clock.now
        armNewHandshake(peer, since: network.clock.now)
    }

    /// Data drawing nothing back for 15 s: a new handshake. One timer at a time, checked when it
    /// fires (as WireGuard's is armed only when not pending).
    private func armNewHandshake(_ peer: Int, since sentAt: Nanoseconds) {
        guard let state = peers[peer], !state.newHandshakeArmed else { return }
        peers[peer]!.newHandshakeArmed = true
        let generation = state.generation
        network.after(.nanoseconds(Self.rekeyTimeout + Self.keepaliveTimeout)) { [weak self] in
            guard let self, let state = peers[peer], state.generation == generation else { return }
            peers[peer]!.newHandshakeArmed = false
            if state.lastReceived < sentAt {
                initiate(peer, retry: false)
            } else if state.lastDataSent > state.lastReceived {
                armNewHandshake(peer, since: state.lastDataSent)
            }
        }
    }

    private func sendKeepalive(to peer: Int) { send(.data, bytes: Self.keepaliveSize, to: peer) }

    private func usable(_ session: Session?) -> Session? {
        guard let session, network.clock.now - session.created < Self.rejectAfter else { return nil }
        return session
    }

    private func send(_ kind: Kind, bytes: Int, to peer: Int) {
        guard let state = peers[peer] else { return }
        guard let session = usable(state.current) else {
            peers[peer]!.staged = true
            return initiate(peer, retry: false)
        }
        transmit(kind, first: session.id, second: 0, size: bytes, to: peer)
        if session.initiator, network.clock.now - session.created >= Self.rekeyAfter { initiate(peer, retry: false) }
    }

    private func transmit(_ kind: Kind, first: UInt64, second: UInt64, size: Int, to peer: Int) {
        // WireGuard's timers count a packet as sent before it goes out, with an endpoint or none.
        peers[peer]?.lastSent = network.clock.now
        guard let endpoint = peers[peer]?.endpoint else { return armPersistentKeepalive(peer) }
        var bytes = [Self.magic, kind.rawValue, UInt8(truncatingIfNeeded: owner)]
        for value in [first, second] { for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) } }
        bytes += [UInt8](repeating: 0, count: max(0, size - bytes.count))
        if endpoint.address == .v4(IPv4Address(127, 0, 0, 1)), let forwarder = forwarders[endpoint.port] {
            _ = try? forwarder.socket.send(bytes, to: forwarder.remote)
        } else {
            _ = try? socket.send(bytes, to: endpoint)
        }
        if network.verbose { network.note("wg \(owner) → \(peer): \(kind) \(size) B to \(endpoint)") }
        armPersistentKeepalive(peer)
    }

    /// A handshake initiation, unless one went out less than 5 s ago; an unanswered one is sent
    /// again until the attempts began 90 s ago.
    private func initiate(_ peer: Int, retry: Bool) {
        guard let state = peers[peer] else { return }
        let now = network.clock.now
        if !retry, let last = state.lastInitiation, now - last < Self.rekeyTimeout { return }
        let began = state.attemptsBegan ?? now
        guard now - began < Self.rekeyAttempt else {
            peers[peer]!.handshake = nil
            peers[peer]!.attemptsBegan = nil
            peers[peer]!.staged = false
            return
        }
        let id = network.random.next()
        peers[peer]!.handshake = id
        peers[peer]!.attemptsBegan = began
        peers[peer]!.lastInitiation = now
        transmit(.initiation, first: id, second: 0, size: Self.initiationSize, to: peer)
        let generation = state.generation
        let jitter = network.random.nanoseconds(in: 0...333_000_000)
        // Retransmitted until a handshake completes (whatever state the one handshake slot is in).
        network.after(.nanoseconds(Self.rekeyTimeout + jitter)) { [weak self] in
            guard let self, let state = peers[peer], state.generation == generation, state.attemptsBegan != nil,
                  state.lastInitiation == now else { return }
            initiate(peer, retry: true)
        }
    }

    /// Persistent keepalive after the interval with no packet either way: one timer at a time,
    /// which finds the due time again when it fires.
    private func armPersistentKeepalive(_ peer: Int) {
        guard let state = peers[peer], state.persistentKeepalive > 0, !state.keepaliveArmed else { return }
        peers[peer]!.keepaliveArmed = true
        let due = max(state.lastSent, state.lastReceived) + state.persistentKeepalive
        let generation = state.generation
        network.after(.nanoseconds(max(0, due - network.clock.now))) { [weak self] in
            guard let self, let state = peers[peer], state.generation == generation else { return }
            peers[peer]!.keepaliveArmed = false
            if state.persistentKeepalive > 0, network.clock.now - max(state.lastSent, state.lastReceived) >= state.persistentKeepalive {
                sendKeepalive(to: peer)
            }
            armPersistentKeepalive(peer)
        }
    }

    // MARK: Receiving

    /// Whether `datagram` is one of the model's messages; handles it if so.
    func receive(_ datagram: PortDatagram) -> Bool {
        let bytes = datagram.payload
        guard bytes.count >= 19, bytes[0] == Self.magic, let kind = Kind(rawValue: bytes[1]) else { return false }
        let peer = Int(bytes[2])
        func value(at offset: Int) -> UInt64 { bytes[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        guard peers[peer] != nil else { return true }  // an unknown key: dropped
        let now = network.clock.now
        switch kind {
        case .initiation:
            // A replayed initiation (its timestamp no later than the last one's) is dropped.
            guard peers[peer]!.lastInitiationReceived != value(at: 3) else { return true }
            peers[peer]!.lastInitiationReceived = value(at: 3)
            // One handshake state per peer: consuming the peer's initiation replaces this side's own,
            // whose response then matches nothing (two initiations crossing leave both sides
            // responders, until a retransmission).
            peers[peer]!.handshake = nil
            let session = Session(id: network.random.next(), initiator: false, created: now)
            peers[peer]!.next = session
            authenticated(peer, from: datagram.source, bytes: bytes.count)
            transmit(.response, first: value(at: 3), second: session.id, size: Self.responseSize, to: peer)
        case .response:
            guard peers[peer]!.handshake == value(at: 3) else { return true }
            established(peer, Session(id: value(at: 11), initiator: true, created: now))
            authenticated(peer, from: datagram.source, bytes: bytes.count)
            sendKeepalive(to: peer)
        case .data:
            let id = value(at: 3)
            let state = peers[peer]!
            if let next = state.next, next.id == id, now - next.created < Self.rejectAfter {
                established(peer, next)
            } else {
                guard [state.current, state.previous].contains(where: { usable($0)?.id == id }) else { return true }
            }
            authenticated(peer, from: datagram.source, bytes: bytes.count)
            if bytes.count > Self.keepaliveSize {
                peers[peer]!.lastDataReceived = now
                armPassiveKeepalive(peer, since: now)
            }
        }
        return true
    }

    private func established(_ peer: Int, _ session: Session) {
        peers[peer]!.previous = peers[peer]!.current
        peers[peer]!.current = session
        peers[peer]!.next = nil
        peers[peer]!.handshake = nil
        peers[peer]!.attemptsBegan = nil
        peers[peer]!.lastHandshakeWall = network.clock.wallMilliseconds
        handshakes[peer, default: 0] += 1
        if peers[peer]!.staged {
            peers[peer]!.staged = false
            send(.data, bytes: Self.keepaliveSize + Self.stagedSize, to: peer)
        }
    }

    private func authenticated(_ peer: Int, from source: Endpoint, bytes: Int) {
        peers[peer]!.endpoint = source
        peers[peer]!.received += UInt64(bytes)
        peers[peer]!.lastReceived = network.clock.now
        armPersistentKeepalive(peer)
    }

    /// A keepalive 10 s after data received, unless something was sent since: one timer at a time.
    private func armPassiveKeepalive(_ peer: Int, since receivedAt: Nanoseconds) {
        guard let state = peers[peer], !state.passiveArmed else { return }
        peers[peer]!.passiveArmed = true
        let generation = state.generation
        network.after(.nanoseconds(Self.keepaliveTimeout)) { [weak self] in
            guard let self, let state = peers[peer], state.generation == generation else { return }
            peers[peer]!.passiveArmed = false
            if state.lastSent < receivedAt {
                sendKeepalive(to: peer)
            } else if state.lastDataReceived > state.lastSent {
                armPassiveKeepalive(peer, since: state.lastDataReceived)
            }
        }
    }
}
