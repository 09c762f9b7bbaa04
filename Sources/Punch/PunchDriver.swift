import Net

/// The punch sessions of every peer on one WireGuard port: sends their bursts, routes arriving
/// punch messages to the session of their sender, and reports new pins. Other datagrams on the
/// port (STUN answers) are handed back to the caller. The agent's executor delegates the
/// Punching state's `sendPunch` actions here; `Peer` stays free of sockets.
public final class PunchDriver<PeerID: Hashable> {
    public let socket: any PortSocket
    private var sessions: [PeerID: PunchSession] = [:]
    private var peers: [KeyID: PeerID] = [:]

    public init(socket: any PortSocket) {
        self.socket = socket
    }

    /// Starts (or restarts, with a new session) punching toward `peer`.
    public func start(_ peer: PeerID, _ session: PunchSession) {
        sessions[peer] = session
        peers[session.key.remote] = peer
    }

    /// Forgets `peer`'s session.
    public func stop(_ peer: PeerID) {
        guard let session = sessions.removeValue(forKey: peer) else { return }
        peers[session.key.remote] = nil
    }

    /// The endpoint pinned for `peer`, once one is.
    public func pinned(_ peer: PeerID) -> Endpoint? { sessions[peer]?.pinned }

    /// Sends one burst toward `peer`'s candidates.
    public func burst(_ peer: PeerID) {
        guard var session = sessions[peer] else { return }
        for case .send(let bytes, let destination) in session.burst() { send(bytes, to: destination) }
        sessions[peer] = session
    }

    /// Sends PUNCHes toward guessed addresses of `peer` (port prediction); an ACK from one pins it.
    public func probe(_ peer: PeerID, _ destinations: [Endpoint]) {
        guard var session = sessions[peer] else { return }
        for case .send(let bytes, let destination) in session.probe(destinations) { send(bytes, to: destination) }
        sessions[peer] = session
    }

    /// Reads every queued datagram: punch messages go to their sessions (answers are sent), the
    /// rest is returned. `pinned` lists the peers whose endpoint was pinned by this call.
    public func receive() throws(SystemError) -> (pinned: [(PeerID, Endpoint)], other: [PortDatagram]) {
        var pinned: [(PeerID, Endpoint)] = []
        var other: [PortDatagram] = []
        while let datagram = try socket.receive() {
            guard let sender = PunchMessage.sender(of: datagram.payload) else {
                other.append(datagram)
                continue
            }
            guard let peer = peers[sender], var session = sessions[peer] else { continue }
            for effect in session.receive(datagram.payload, from: datagram.source) {
                switch effect {
                case .send(let bytes, let destination): send(bytes, to: destination)
                case .pin(let endpoint): pinned.append((peer, endpoint))
                }
            }
            sessions[peer] = session
        }
        return (pinned, other)
    }

    private func send(_ bytes: [UInt8], to destination: Endpoint) {
        // An unreachable candidate is not fatal: the others may work.
        _ = try? socket.send(bytes, to: destination)
    }
}
