import Net
import Time

/// The punch sessions of every peer on one WireGuard port: sends their bursts, routes arriving
/// punch messages to the session of their sender, and reports new pins. Other datagrams on the
/// port (STUN answers) are handed back to the caller. The agent's executor delegates the
/// Punching state's `sendPunch` actions here; `Peer` stays free of sockets.
///
/// A peer's session may also punch from a fan of extra ports (see ``fan(_:_:toward:)``): the
/// symmetric side of a pair with a port-restricted NAT, where the port-restricted side's guesses
/// need to hit only one of many mappings.
///
/// Everything sent toward a peer is within its ``ProbeBudget``: addresses that have not answered
/// get a bounded number of PUNCHes a minute.
///
/// `FanSocket` is the fan ports' socket type: the agent's are `UDPSocket`s, the simulation's
/// sockets of its virtual network.
public final class PunchDriver<PeerID: Hashable, FanSocket: PortSocket> {
    public let socket: any PortSocket
    private let clock: any TimeSource
    private var budgets: [PeerID: ProbeBudget] = [:]
    private var sessions: [PeerID: PunchSession] = [:]
    private var peers: [KeyID: PeerID] = [:]
    private var fans: [PeerID: (sockets: [FanSocket], target: Endpoint)] = [:]
    /// The fan port a peer's pin came through (none: the WireGuard port).
    private var pinnedThrough: [PeerID: FanSocket] = [:]
    /// Per peer, the latest small datagram on a fan port that is not a punch message, from one of
    /// the peer's candidates (and which port): the peer's WireGuard, which pinned first, has already
    /// sent to the port. It is handed to the forwarder, or the first keepalive or handshake would be lost.
    private var held: [PeerID: (port: ObjectIdentifier, bytes: [UInt8])] = [:]
    private static var heldLimit: Int { 256 }

    public init(socket: any PortSocket, clock: any TimeSource = SystemClock()) {
        self.socket = socket
        self.clock = clock
        guesses = TokenBucket(burst: Self.guessBurst, now: clock.now)
    }

    /// Starts (or restarts, with a new session) punching toward `peer`, whose public address as the
    /// control server saw it is `observed` (the fan and the spray may go there).
    public func start(_ peer: PeerID, _ session: PunchSession, observed: IPAddress?) {
        if budgets[peer] == nil { budgets[peer] = ProbeBudget(observed: observed, now: clock.now) }
        budgets[peer]?.observed = observed
        sessions[peer] = session
        peers[session.key.remote] = peer
        pinnedThrough[peer] = nil
        held[peer] = nil
    }

    /// Forgets `peer`'s session and budget (its fan stays with the caller, see ``dropFan(_:)``).
    public func stop(_ peer: PeerID) {
        pinnedThrough[peer] = nil
        held[peer] = nil
        budgets[peer] = nil
        guard let session = sessions.removeValue(forKey: peer) else { return }
        peers[session.key.remote] = nil
    }

    /// Adds candidates of `peer` that arrived after its session started (see ``PunchSession/add(candidates:)``).
    public func add(candidates: [Endpoint], for peer: PeerID) { sessions[peer]?.add(candidates: candidates) }

    /// The addresses `peer`'s session learned from its PUNCHes, for the next punch session (see ``PunchSession/learned``).
    public func learned(_ peer: PeerID) -> [Endpoint] { sessions[peer]?.learned ?? [] }

    /// The endpoint pinned for `peer`, once one is.
    public func pinned(_ peer: PeerID) -> Endpoint? { sessions[peer]?.pinned }

    /// The fan port the pin of `peer` came through, or `nil` when it came through the WireGuard port.
    public func pinnedFanSocket(_ peer: PeerID) -> FanSocket? { pinnedThrough[peer] }

    /// From now on every burst toward `peer` also sends one PUNCH from each of `sockets` to
    /// `target` (the peer's public endpoint): each socket gets its own mapping in a NAT that maps
    /// per destination. Answers arriving on them go to ``receive(_:on:)``.
    public func fan(_ peer: PeerID, _ sockets: [FanSocket], toward target: Endpoint) {
        fans[peer] = (sockets, target)
    }

    /// Forgets `peer`'s fan and returns its sockets, for the caller to stop watching (or to keep the
    /// one a pin came through).
    @discardableResult
    public func dropFan(_ peer: PeerID) -> [FanSocket] {
        fans.removeValue(forKey: peer)?.sockets ?? []
    }

    /// Where `peer`'s open fan punches toward; `nil` when none is open.
    public func fanTarget(_ peer: PeerID) -> Endpoint? { fans[peer]?.target }

    /// Fan sockets open over all peers.
    public var fanSocketCount: Int { fans.values.reduce(0) { $0 + $1.sockets.count } }

    /// Fan ports open at once over all peers (each is a descriptor; the usual limit is 1,024).
    public static var fanSocketLimit: Int { 512 }

    /// How many ports a new fan may have: ``DirectPathPlan/fanPorts``, within ``fanSocketLimit``
    /// over all peers.
    public var fanPortsAvailable: Int { max(0, min(DirectPathPlan.fanPorts, Self.fanSocketLimit - fanSocketCount)) }

    /// The datagram held for `peer` if it came on the fan port `socket` (see `held`), once.
    public func takeHeld(_ peer: PeerID, on socket: FanSocket) -> [UInt8]? {
        guard let entry = held.removeValue(forKey: peer), entry.port == ObjectIdentifier(socket) else { return nil }
        return entry.bytes
    }

    /// PUNCHes toward `peer` not sent for want of budget.
    public func withheld(_ peer: PeerID) -> Int { budgets[peer]?.withheld ?? 0 }

    /// Sends one burst toward `peer`'s candidates, and from its fan.
    public func burst(_ peer: PeerID) {
        guard var session = sessions[peer] else { return }
        for case .send(let bytes, let destination) in session.burst() { send(bytes, to: destination, for: peer) }
        if let fan = fans[peer] {
            for socket in fan.sockets where allow(peer, fan.target) {
                for case .send(let bytes, let destination) in session.probe([fan.target]) { _ = try? socket.send(bytes, to: destination) }
            }
        }
        sessions[peer] = session
    }

    /// Guessed addresses probed over all peers, per minute. Each guess is a flow in this side's own
    /// NAT's table until conntrack forgets it (30 s unanswered), and a home router's table holds
    /// 16,384 (OpenWrt's default) for every device behind it: a member with many symmetric peers
    /// spraying 1,024 guesses per attempt at each would fill it within seconds, and its own new
    /// flows, its housemates' too, would be dropped. Guesses hold at most 2,048 entries at once, an
    /// eighth of such a table.
    public static var guessesPerMinute: Int { 2048 }
    private var guesses: TokenBucket
    private static var guessBurst: Double { Double(guessesPerMinute) }
    private static var guessesPerSecond: Double { Double(guessesPerMinute) / 60 }

    /// Guesses that may go now: the per-minute allowance, refilled continuously.
    public var guessesAvailable: Int {
        Int(guesses.available(now: clock.now, perSecond: Self.guessesPerSecond, burst: Self.guessBurst))
    }

    /// Sends PUNCHes toward guessed addresses of `peer` (port prediction), as many as
    /// ``guessesAvailable`` allows, in order; an ACK from one pins it. Returns how many the
    /// allowance let through (the peer's ``ProbeBudget`` may still hold some back).
    @discardableResult
    public func probe(_ peer: PeerID, _ destinations: [Endpoint]) -> Int {
        guard var session = sessions[peer] else { return 0 }
        let allowed = guesses.take(upTo: destinations.count, now: clock.now, perSecond: Self.guessesPerSecond, burst: Self.guessBurst)
        for case .send(let bytes, let destination) in session.probe(Array(destinations.prefix(allowed))) { send(bytes, to: destination, for: peer) }
        sessions[peer] = session
        return allowed
    }

    /// Reads the queued datagrams, at most ``ReadBatch/datagrams`` (the rest wait for the next
    /// round of the loop): punch messages go to their sessions (answers are sent), the rest is
    /// returned. `pinned` lists the peers whose endpoint was pinned by this call.
    public func receive() throws(SystemError) -> (pinned: [(PeerID, Endpoint)], other: [PortDatagram]) {
        var pinned: [(PeerID, Endpoint)] = []
        var other: [PortDatagram] = []
        for _ in 0..<ReadBatch.datagrams {
            guard let datagram = try socket.receive() else { break }
            guard let sender = PunchMessage.sender(of: datagram.payload) else {
                other.append(datagram)
                continue
            }
            guard let peer = peers[sender], var session = sessions[peer] else { continue }
            for effect in session.receive(datagram.payload, from: datagram.source) {
                switch effect {
                case .send(let bytes, let destination): send(bytes, to: destination, for: peer)
                case .pin(let endpoint):
                    budgets[peer]?.verify(endpoint.address)
                    pinned.append((peer, endpoint))
                }
            }
            sessions[peer] = session
        }
        return (pinned, other)
    }

    /// Reads the datagrams queued on one of `peer`'s fan sockets, at most ``ReadBatch/datagrams``:
    /// its punch messages go to the peer's session, answers leave from the same socket. Returns the
    /// pinned endpoint when this read pinned it (through `socket`, then ``pinnedFanSocket(_:)``).
    public func receive(_ peer: PeerID, on socket: FanSocket) throws(SystemError) -> Endpoint? {
        var pinned: Endpoint?
        for _ in 0..<ReadBatch.datagrams {
            guard let datagram = try socket.receive() else { break }
            guard var session = sessions[peer] else { continue }
            let sender = PunchMessage.sender(of: datagram.payload)
            guard sender == session.key.remote else {
                if sender == nil, datagram.payload.count <= Self.heldLimit, session.candidates.contains(datagram.source) {
                    held[peer] = (ObjectIdentifier(socket), datagram.payload)
                }
                continue
            }
            for effect in session.receive(datagram.payload, from: datagram.source) {
                switch effect {
                case .send(let bytes, let destination) where allow(peer, destination): _ = try? socket.send(bytes, to: destination)
                case .send: break
                case .pin(let endpoint):
                    budgets[peer]?.verify(endpoint.address)
                    pinned = endpoint
                    pinnedThrough[peer] = socket
                }
            }
            sessions[peer] = session
        }
        return pinned
    }

    private func send(_ bytes: [UInt8], to destination: Endpoint, for peer: PeerID) {
        guard allow(peer, destination) else { return }
        // An unreachable candidate is not fatal: the others may work.
        _ = try? socket.send(bytes, to: destination)
    }

    private func allow(_ peer: PeerID, _ destination: Endpoint) -> Bool {
        budgets[peer]?.allow(destination.address, now: clock.now) ?? false
    }
}
