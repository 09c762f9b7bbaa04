import Net
import Rendezvous
import Time

/// The control server and relay of a connection scenario, as the agents see them: a punch request
/// announces one punch to both members (a request within the join window of the pair's last punch
/// gets that punch again, as `ControlCore` does), a relay request sends the relay's offer to both,
/// and an allocation is granted a round trip later. Each message crosses the Internet under the
/// network's conditions: delayed, and sometimes lost (an allocation is asked for again every
/// 300 ms, and the agent moves on after 2 s without an answer). Members' records go out as
/// `ControlCore` pushes them, with the address the server sees each member at.
final class SimulatedControl {
    let relay: SimulatedRelayService
    /// The agents, and each member's public address as the server sees it, by member index.
    var agents: [SimulatedAgent] = []
    var observed: [IPAddress] = []
    /// Each member's record as its last register that arrived carried it (until then, as it joined).
    private var registered: [Int: MemberRecord] = [:]
    /// Members whose last register is unanswered, and those with a resend already due.
    private var unanswered: Set<Int> = [], resendDue: Set<Int> = []
    private unowned let network: SimulatedNetwork
    private var punches: [Int: UInt64] = [:]
    /// Until when the server is down after a restart: requests arriving before then are lost.
    private var downUntil: Nanoseconds = 0
    /// Requests received, for the bound on them.
    private(set) var punchRequests = 0, relayRequests = 0

    static let relayAddress = IPv4Address(192, 0, 2, 20)
    static let punchLead: UInt64 = 100, joinWindow: UInt64 = 1000

    init(on network: SimulatedNetwork) {
        self.network = network
        relay = SimulatedRelayService(on: network, at: Self.relayAddress)
    }

    /// The key of the pair of members `a` and `b`, either way round.
    static func pair(_ a: Int, _ b: Int) -> Int { min(a, b) * 1000 + max(a, b) }

    /// Runs `body` one Internet crossing from now, unless the message is lost (then `lost`, at once).
    private func cross(lost: () -> Void = {}, _ body: @escaping () -> Void) {
        guard !network.random.happens(network.conditions.loss) else { return lost() }
        let conditions = network.conditions
        network.after(.nanoseconds(conditions.delay + network.random.nanoseconds(in: 0...conditions.jitter)), body)
    }

    func requestPunch(from a: Int, with b: Int) {
        cross { [unowned self] in
            guard isUp else { return }
            punchRequests += 1
            let wall = UInt64(network.clock.wallMilliseconds)
            let pair = Self.pair(a, b)
            let start: UInt64
            if let last = punches[pair], wall <= last + Self.joinWindow { start = last } else {
                start = wall + Self.punchLead
                punches[pair] = start
            }
            network.note("control announces a punch of \(a) and \(b) at \(start)")
            for (to, with) in [(a, b), (b, a)] {
                cross { [unowned self] in agents[to].punchAnnounced(with: with, startMillis: start) }
            }
        }
    }

    func requestRelay(from a: Int, with b: Int) {
        cross { [unowned self] in
            guard isUp else { return }
            relayRequests += 1
            for (to, with) in [(a, b), (b, a)] {
                cross { [unowned self] in agents[to].relaysOffered(with: with, [offer(to: to, with: with)]) }
            }
        }
    }

    /// Member `a`'s record as the server has it: as registered, with the address it saw the
    /// member at appended (`ControlCore`'s observed candidate, here with the WireGuard port).
    func record(of a: Int) -> MemberRecord {
        var record = registered[a] ?? agents[a].announced
        record.candidates.append(Candidate(.observed, Endpoint(observed[a], SimulatedMember.listenPort)))
        return record
    }

    /// Member `a` sends its record in a register (a new public endpoint or NAT type), as
    /// `ControlClient.update` does: lost, sent while the server is down, or its answer lost, it goes
    /// again in place of the member's next heartbeat (within 10 s, then every 10 s), with the
    /// record the member has then, until an answer comes. The server pushes a record that changed.
    func announce(_ record: MemberRecord, from a: Int) {
        unanswered.insert(a)
        register(record, from: a)
    }

    private func register(_ record: MemberRecord, from a: Int) {
        let resend = { [unowned self] in resendAtHeartbeat(a) }
        cross(lost: resend) { [unowned self] in
            guard isUp else { return resend() }
            if registered[a] != record {
                registered[a] = record
                push(a)
            }
            cross(lost: resend) { [unowned self] in unanswered.remove(a) }
        }
    }

    private func resendAtHeartbeat(_ a: Int) {
        guard resendDue.insert(a).inserted else { return }
        let heartbeat = Duration.nanoseconds(network.random.nanoseconds(in: 0...10_000_000_000))
        network.after(heartbeat) { [unowned self] in
            resendDue.remove(a)
            if unanswered.contains(a) { register(agents[a].announced, from: a) }
        }
    }

    /// Member `a`'s public address changed to `address`: its next heartbeat (within 10 s, every
    /// 10 s while lost) comes from there, the server pushes its record with the new address, and
    /// the member learns it from the answer.
    func moved(_ a: Int, to address: IPAddress) {
        let heartbeat = Duration.nanoseconds(network.random.nanoseconds(in: 0...10_000_000_000))
        network.after(heartbeat) { [unowned self] in
            cross(lost: { [unowned self] in network.after(.seconds(10)) { [unowned self] in moved(a, to: address) } }) { [unowned self] in
                guard isUp, observed[a] != address else { return }
                observed[a] = address
                push(a)
                cross { [unowned self] in agents[a].observedChanged(to: address) }
            }
        }
    }

    /// The server pushes member `a`'s record to every other member, as `ControlCore` does.
    private func push(_ a: Int) {
        let record = record(of: a)
        for b in agents.indices where b != a {
            let heartbeat = Duration.nanoseconds(network.random.nanoseconds(in: 0...10_000_000_000))
            cross(lost: { [unowned self] in resync(b, of: a, after: heartbeat) }) { [unowned self] in agents[b].recordChanged(record, of: a) }
        }
    }

    /// Member `b` lost a push of `a`'s record: its heartbeat `after` from now shows the gap in
    /// revisions, and it registers again for the full view, `a`'s record as the server has it then
    /// (a heartbeat or an answer lost, the next heartbeat 10 s later).
    private func resync(_ b: Int, of a: Int, after heartbeat: Duration) {
        network.after(heartbeat) { [unowned self] in
            let current = record(of: a)
            cross(lost: { [unowned self] in resync(b, of: a, after: .seconds(10)) }) { [unowned self] in
                agents[b].recordChanged(current, of: a)
            }
        }
    }

    /// The server restarts: down for `down`, and what it knew of punches is gone.
    func restart(down: Duration) {
        punches = [:]
        downUntil = network.clock.now + down.nanoseconds
    }

    private var isUp: Bool {
        guard network.clock.now < downUntil else { return true }
        network.note("control is down: a request is lost")
        return false
    }

    /// A member gives its allocation back: the relay closes the port one crossing later (a lost
    /// release is sent again, as the agent's relay client does: only later).
    func release(_ endpoint: Endpoint) {
        let conditions = network.conditions
        let crossings: Int64 = network.random.happens(conditions.loss) ? 3 : 1
        network.after(.nanoseconds(crossings * conditions.delay + network.random.nanoseconds(in: 0...conditions.jitter))) { [unowned self] in
            relay.release(endpoint)
        }
    }

    /// The relay's offer to member `a` for the pair with `b`: its token names the pair and `a`'s
    /// side, as a relay token does.
    private func offer(to a: Int, with b: Int) -> RelayOffer {
        let pair = UInt32(Self.pair(a, b))
        return RelayOffer(service: Endpoint(.v4(Self.relayAddress), 3478), allocations: 0, capacity: 100,
                          token: [UInt8(pair >> 24), UInt8(truncatingIfNeeded: pair >> 16), UInt8(truncatingIfNeeded: pair >> 8),
                                  UInt8(truncatingIfNeeded: pair), a < b ? 0 : 1],
                          replyKey: [2])
    }

    /// A member asks the relay for its side of the pair `offer`'s token names; `granted` gets the
    /// grant, or `nil` when no answer came within 2 s.
    func allocate(_ offer: RelayOffer, granted: @escaping (RelayGrant?) -> Void) {
        let token = offer.token
        let pair = Int(token[0]) << 24 | Int(token[1]) << 16 | Int(token[2]) << 8 | Int(token[3])
        var answered = false
        // Sent again every 300 ms until answered, for 2 s, as the agent's relay client does.
        for attempt in 0..<7 {
            network.after(.milliseconds(300 * Int64(attempt))) { [unowned self] in
                guard !answered else { return }
                cross { [unowned self] in
                    let endpoint = relay.allocate(pair: pair, side: Int(token[4]))
                    cross {
                        guard !answered else { return }
                        answered = true
                        granted(RelayGrant(offer: offer, endpoint: endpoint))
                    }
                }
            }
        }
        network.after(.seconds(2)) {
            guard !answered else { return }
            answered = true
            granted(nil)
        }
    }
}
