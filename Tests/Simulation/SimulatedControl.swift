import Net
import Rendezvous
import Time

/// The control server and relay of a connection scenario, as the agents see them: a punch request
/// announces one punch to both members (a request within the join window of the pair's last punch
/// gets that punch again, as `ControlCore` does), a relay request sends the relay's offer to both,
/// and an allocation is granted a round trip later. Each message crosses the Internet under the
/// network's conditions: delayed, and sometimes lost (a lost allocation answers nothing, and the
/// agent moves on after 2 s).
final class SimulatedControl {
    let relay: SimulatedRelayService
    /// The agents, by member index.
    var agents: [SimulatedAgent] = []
    private unowned let network: SimulatedNetwork
    private var punches: [Int: UInt64] = [:]
    /// Until when the server is down after a restart: requests arriving before then are lost.
    private var downUntil: Nanoseconds = 0
    private let offer: RelayOffer
    /// Requests received, for the bound on them.
    private(set) var punchRequests = 0, relayRequests = 0

    static let relayAddress = IPv4Address(192, 0, 2, 20)
    static let punchLead: UInt64 = 100, joinWindow: UInt64 = 1000

    init(on network: SimulatedNetwork) {
        self.network = network
        relay = SimulatedRelayService(on: network, at: Self.relayAddress)
        offer = RelayOffer(service: Endpoint(.v4(Self.relayAddress), 3478), allocations: 0, capacity: 100, token: [1], replyKey: [2])
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
                cross { [unowned self] in agents[to].relaysOffered(with: with, [offer]) }
            }
        }
    }

    /// Member `a` registers again with `record` (a new public endpoint or NAT type), every second
    /// until the server has it (`ControlClient`'s `changed`), unless a newer record took its place.
    /// The server pushes it to every other member, as `ControlCore` does; a member that lost the
    /// push notices the gap in revisions at its next heartbeat (every 10 s) and registers again
    /// for the full view.
    func announce(_ record: MemberRecord, from a: Int) {
        let again = { [unowned self] in
            network.after(.seconds(1)) { [unowned self] in if agents[a].announced == record { announce(record, from: a) } }
        }
        cross(lost: again) { [unowned self] in
            guard isUp else { return again() }
            for b in agents.indices where b != a {
                let resync = Duration.nanoseconds(network.random.nanoseconds(in: 0...10_000_000_000))
                cross(lost: { [unowned self] in
                    network.after(resync) { [unowned self] in cross { [unowned self] in agents[b].recordChanged(record, of: a) } }
                }) { [unowned self] in agents[b].recordChanged(record, of: a) }
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

    /// Member `a` asks the relay for its side of the pair with `b`.
    func allocate(_ offer: RelayOffer, from a: Int, with b: Int, granted: @escaping (RelayGrant?) -> Void) {
        var answered = false
        cross { [unowned self] in
            let endpoint = relay.allocate(pair: Self.pair(a, b), side: a < b ? 0 : 1)
            cross {
                answered = true
                granted(RelayGrant(offer: offer, endpoint: endpoint))
            }
        }
        network.after(.seconds(2)) { if !answered { granted(nil) } }
    }
}
