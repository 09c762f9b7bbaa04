import Net

/// One side of a coordinated punch with one peer, as a pure value: feed it the datagrams that
/// arrive, get back what to send and which address to pin. Sockets and clocks stay outside.
///
/// - A burst sends one PUNCH, with a fresh nonce, to every candidate (local addresses first,
///   then reflexive ones, in the order given).
/// - An authenticated PUNCH in the punch session this value holds is answered with an ACK echoing its nonce, to the
///   address it came from, and — until this side pinned, for up to `punchBackLimit` of them per
///   address — with a PUNCH of our own: the path it came by is open, and the peer's ACK to our
///   PUNCH pins it. Not once only: when that PUNCH or its ACK is lost, the peer's next PUNCH is the
///   next chance (a peer that pinned first sends nothing else this side could pin on). From an address that is not a candidate (the
///   peer is behind a NAT that maps per destination), the address becomes a peer-reflexive candidate.
/// - An authenticated PUNCH of another session is answered too, in its own session, so that the
///   peer pins: the sides punch in different sessions when one of them missed the control server's
///   announcement (one datagram, lost under packet loss). Its address becomes a candidate as above,
///   but it pins nothing here: it may be an old session's, replayed; this side pins on the peer's
///   answer to its own PUNCHes (to a symmetric NAT's fresh mapping too, only known from this PUNCH).
/// - Addresses learned that way are kept (``learned``) for the next punch session with the peer to punch
///   from its first burst: a symmetric NAT keeps its mapping toward us while it is used, and the
///   peer's PUNCHes through it may all have been answered by the session this one replaces.
/// - Only the first authenticated ACK echoing one of our own nonces pins its source address as the
///   peer's endpoint: the address answered this side. A PUNCH pins nothing, even from a candidate
///   (it may be a captured one, replayed from a third address). Later messages never move the pin.
/// - A PUNCH is answered once: its nonce is remembered (the newest `answeredMemory`), so a replayed
///   PUNCH gets no second ACK — a captured one cannot make this side send to an address of the
///   replayer's choosing again and again.
public struct PunchSession: Sendable {
    /// What the caller must do.
    public enum Effect: Equatable, Sendable {
        /// Send these bytes from the WireGuard port to this address.
        case send([UInt8], to: Endpoint)
        /// This address is the peer's endpoint: point WireGuard at it.
        case pin(Endpoint)
    }

    public let key: PairKey
    public let session: UInt64
    public private(set) var candidates: [Endpoint]
    public private(set) var pinned: Endpoint?
    /// Candidates learned from PUNCHes (peer-reflexive), newest last, at most `learnedMemory`.
    public private(set) var learned: [Endpoint] = []
    /// Messages that were refused, by reason (for counters and logs).
    public private(set) var refused: [PunchMessageError: Int] = [:]
    /// Nonces of our PUNCHes, newest last; bounded. An attempt with a fan or a spray of guessed
    /// ports sends up to about 1,300 PUNCHes before their answers are read: all are remembered.
    private var nonces: [[UInt8]] = []
    private static let nonceMemory = 2048
    /// Nonces of the PUNCHes answered, in a set and in the order answered (the oldest forgotten first).
    private var answered: Set<[UInt8]> = []
    private var answeredOrder: [[UInt8]] = []
    private static let answeredMemory = 512
    /// Per address a PUNCH came from, how many of ours went back (candidates and learned ones: bounded).
    private var punchedBack: [Endpoint: Int] = [:]
    /// PUNCHes sent back to one address: as many as the peer's bursts of a round (2 attempts × 5).
    private static let punchBackLimit = 10
    private static let candidateLimit = 32
    private static let learnedMemory = 4

    /// A session punching `candidates`, then the addresses an earlier session with the peer `learned`.
    public init(key: PairKey, session: UInt64, candidates: [Endpoint], learned: [Endpoint] = []) {
        self.key = key
        self.session = session
        self.candidates = Array(candidates.prefix(PunchSession.candidateLimit))
        for endpoint in learned.filter({ !self.candidates.contains($0) }).suffix(PunchSession.learnedMemory) { learn(endpoint) }
    }

    /// Adds the peer's candidates that arrived after the session started (a port its gateway
    /// mapped, a new address), up to the session's limit of candidates.
    public mutating func add(candidates more: [Endpoint]) {
        for endpoint in more where !candidates.contains(endpoint) && candidates.count < PunchSession.candidateLimit {
            candidates.append(endpoint)
        }
    }

    /// One burst: a PUNCH to every candidate.
    public mutating func burst() -> [Effect] {
        candidates.map { punch(to: $0) }
    }

    /// PUNCHes to addresses that are not candidates — predicted ports of a symmetric NAT. Their
    /// answers pin like any other: an authenticated ACK echoing one of these nonces.
    public mutating func probe(_ destinations: [Endpoint]) -> [Effect] {
        destinations.map { punch(to: $0) }
    }

    private mutating func punch(to destination: Endpoint) -> Effect {
        let nonce = PunchMessage.randomNonce()
        nonces.append(nonce)
        if nonces.count > PunchSession.nonceMemory { nonces.removeFirst(nonces.count - PunchSession.nonceMemory) }
        let message = PunchMessage(kind: .punch, sender: key.local, receiver: key.remote, session: session, nonce: nonce)
        return .send(message.encoded(with: key), to: destination)
    }

    /// Handles a datagram that arrived on the WireGuard port from `source`.
    public mutating func receive(_ bytes: [UInt8], from source: Endpoint) -> [Effect] {
        let message: PunchMessage
        do {
            message = try PunchMessage.decode(bytes, key: key)
        } catch {
            refused[error, default: 0] += 1
            return []
        }
        switch message.kind {
        case .punch:
            guard answered.insert(message.nonce).inserted else {
                refused[.replayed, default: 0] += 1
                return []
            }
            answeredOrder.append(message.nonce)
            if answeredOrder.count > PunchSession.answeredMemory { answered.remove(answeredOrder.removeFirst()) }
            // Answered in its own session: ours, or the one a side that missed an announcement punches in.
            let ack = PunchMessage(kind: .ack, sender: key.local, receiver: key.remote, session: message.session, nonce: message.nonce)
            var effects: [Effect] = [.send(ack.encoded(with: key), to: source)]
            learn(source)
            if pinned == nil, candidates.contains(source), punchedBack[source, default: 0] < PunchSession.punchBackLimit {
                punchedBack[source, default: 0] += 1
                effects.append(punch(to: source))
            }
            return effects
        case .ack:
            guard message.session == session, nonces.contains(message.nonce) else { return [] }
            return pin(source)
        }
    }

    /// Adds a peer-reflexive candidate; false when it is one already or there is no room.
    @discardableResult
    private mutating func learn(_ endpoint: Endpoint) -> Bool {
        guard !candidates.contains(endpoint), candidates.count < PunchSession.candidateLimit else { return false }
        candidates.append(endpoint)
        learned = (learned + [endpoint]).suffix(PunchSession.learnedMemory)
        return true
    }

    private mutating func pin(_ endpoint: Endpoint) -> [Effect] {
        guard pinned == nil else { return [] }
        pinned = endpoint
        return [.pin(endpoint)]
    }
}

