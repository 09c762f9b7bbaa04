import Net
import Peer
import Punch
import Rendezvous
import STUN
import Time

/// What a ``ConnectionScenario`` run did, and the properties every run must have.
public struct ConnectionOutcome: Sendable {
    public var scenario: ConnectionScenario
    /// The pair's members, side 0's then side 1's (their indices in a party).
    public var members = [0, 1]
    /// When the members began to meet, and when a fault struck (virtual time).
    var met: Nanoseconds = 0
    var faultAt: Nanoseconds?
    /// Per side at the end: the state, the path the connection says the tunnel uses, and whether
    /// the side is in a relayed tunnel's upgrade attempt, or entered Direct less than its
    /// confirmation time before the end (still checking a path it pinned or WireGuard found: it
    /// cannot be judged yet).
    public var states: [PeerState?] = [nil, nil]
    public var paths: [PeerContext.Path] = [.none, .none]
    public var upgrading = [false, false]
    /// From the meeting to both sides in Keepalive on the final path for good (`nil`: never).
    public var converged: Nanoseconds?
    /// From the meeting to both sides in Keepalive the first time, on any path.
    public var connected: Nanoseconds?
    /// From the fault to the last transition after it (`nil`: none, or no fault).
    public var recovered: Nanoseconds?
    /// Transitions of either side, after convergence, off the settled path (a relayed tunnel's
    /// upgrade attempts are on purpose, and not counted).
    public var flaps = 0
    /// The path truth broken at the end, one sentence each.
    public var untruths: [String] = []
    /// What did not end when the members left.
    public var leftovers: [String] = []
    /// Every action of the chart executed by either side.
    public var executed: Set<PeerAction> = []
    public var transitions = 0
    public var handshakes = 0
    public var punchRequests = 0, relayRequests = 0
    public var datagrams = (delivered: 0, lost: 0, filtered: 0, unroutable: 0)
    public var trace: [String] = []
    /// The run went past the network's event limit (``SimulatedNetwork/eventLimit``).
    public var runaway = false

    init(scenario: ConnectionScenario) {
        self.scenario = scenario
    }

    /// Each side's detected NAT type: `.unknown` when its detection failed, `nil` when it never finished.
    public var detected: [NATType?] = [nil, nil]

    /// Direct wherever the cell allows it and the types the members detected (a lossy network
    /// may make a NAT look stricter) do not send the pair to the relay at once; relayed otherwise.
    /// Either path the pair settles on is expected — side 0's at the end — when a member's
    /// detection failed (it announced no public endpoint: the pair may stay relayed; the agent
    /// detects again as it upgrades, the simulation keeps the first answer), or when a member
    /// shares its port prediction with other peers (``ConnectionScenario/sharesPortPrediction``).
    public var expectedPath: PeerContext.Path {
        let plan = DirectPathPlan(local: detected[0] ?? .unknown, remote: detected[1] ?? .unknown, withoutNAT: scenario.sameSite)
        let shared = scenario.sharesPortPrediction && plan == .punchWithPortPrediction
        if detected.contains(where: { $0 == nil || $0 == .unknown }) || shared, paths[0] != .none {
            return paths[0]
        }
        return scenario.directExpected && plan != .relay ? .direct : .relayed
    }

    /// Side `side`'s peer: the other member.
    func peer(of side: Int) -> Int { members[1 - side] }

    mutating func record(_ agents: [SimulatedAgent], server: SimulatedControlServer, at end: Nanoseconds, wall: Int64) {
        for (side, agent) in agents.enumerated() {
            states[side] = agent.machine(peer(of: side))?.state
            paths[side] = agent.machine(peer(of: side))?.context.path ?? .none
        }
        // Settled: each side's first entry into Keepalive on the expected path; converged: both settled.
        let steps = agents.indices.map { side in agents[side].steps.filter { $0.peer == peer(of: side) } }
        let settledAt = steps.map { steps in steps.first { $0.to == .keepalive && $0.path == expectedPath }?.at }
        let firstAt = steps.map { steps in steps.first { $0.to == .keepalive }?.at }
        if let a = settledAt[0], let b = settledAt[1] { converged = max(a, b) - met }
        if let a = firstAt[0], let b = firstAt[1] { connected = max(a, b) - met }
        // When the pair last came to Keepalive on the direct path (the later side).
        let directSince = steps.compactMap { $0.last { $0.to == .keepalive && $0.path == .direct }?.at }.max()
        for (side, agent) in agents.enumerated() {
            upgrading[side] = steps[side].last.map { step in
                isUpgradeAttempt(step) && step.to == .punching || step.to == .direct && end - step.at < scenario.timings.directConfirm.nanoseconds
            } ?? false
            transitions += steps[side].count
            handshakes += agent.wireGuard.handshakes(with: peer(of: side))
            // After convergence, only the relayed tunnel's upgrade attempts (its own, or the peer's
            // it joins when the punch is announced) may leave Keepalive, and only back to it.
            // A fault may take the pair off its path: it must be back within the bound, and stay.
            if let fault = faultAt,
               let last = steps[side].last(where: { $0.at > fault && $0.to != .closed && !isUpgradeAttempt($0) })?.at {
                recovered = max(recovered ?? 0, last - fault)
            }
            if let converged {
                for step in steps[side] where step.at > met + converged && (faultAt.map { step.at < $0 } ?? true) {
                    if step.from == .keepalive, !isUpgradeAttempt(step) { flaps += 1 }
                    if step.to == .relaying || step.to == .direct && expectedPath == .relayed { flaps += 1 }
                }
            }
            checkTruth(side, agent, server: server, at: end, wall: wall, directSince: directSince, checking: upgrading[side])
        }
    }

    /// A step of a relayed tunnel's upgrade attempt, on purpose: its own (`upgradeDue`) or the peer's
    /// it joins (`endpointChanged`, on the punch's announcement), its punches, and back to Keepalive.
    func isUpgradeAttempt(_ step: SimulatedAgent.Step) -> Bool {
        guard expectedPath == .relayed else { return false }
        switch (step.from, step.to) {
        case (.keepalive, .punching): return step.event == .upgradeDue || step.event == .endpointChanged
        case (.punching, .punching), (.punching, .keepalive): return true
        default: return false
        }
    }

    /// At the end, what each side says is what WireGuard does: on the direct path WireGuard sends to
    /// the endpoint the connection chose, which is not the relay, and the relay has carried nothing
    /// of the pair for the last minute, or since 5 s after the pair came to the direct path when
    /// that was later (`directSince`: what crossed it before was the relayed path's);
    /// relayed, WireGuard sends to the relay; a side still `checking` a path (in Direct, or in an
    /// upgrade attempt, where WireGuard may follow the peer's pin) says neither.
    /// Either way the tunnel works: a handshake within WireGuard's session lifetime, and something
    /// received within three keepalive intervals.
    private mutating func checkTruth(_ side: Int, _ agent: SimulatedAgent, server: SimulatedControlServer, at end: Nanoseconds, wall: Int64,
                                     directSince: Nanoseconds?, checking: Bool) {
        let peer = peer(of: side)
        let name = agent.member.name
        guard let link = agent.link(peer), let reading = agent.wireGuard.reading(peer), let state = agent.wireGuard.peers[peer] else {
            return untruths.append("\(name) has no peer or no WireGuard peer at the end")
        }
        let endpoint = reading.endpoint
        switch checking ? .none : paths[side] {
        case .direct:
            if endpoint?.address == .v4(SimulatedRelayServer.address) {
                untruths.append("\(name) says direct while WireGuard sends to the relay (\(endpoint.map { "\($0)" } ?? "-"))")
            } else if endpoint != link.connection.path?.endpoint {
                untruths.append("\(name) says direct to \(link.connection.path.map { "\($0.endpoint)" } ?? "-") while WireGuard sends to \(endpoint.map { "\($0)" } ?? "nowhere")")
            }
            let window = max(end - 60_000_000_000, (directSince ?? 0) + 5_000_000_000)
            if let last = server.relay.lastForwarded(pair: server.pair(MemberKey(agent.member.publicKey)!, link.record.key)), last > window {
                untruths.append("the relay carried the pair's datagrams \((end - last) / 1_000_000) ms before the end while \(name) says direct")
            }
        case .relayed:
            if endpoint != link.connection.relayUse.grant?.endpoint {
                untruths.append("\(name) says relayed while WireGuard sends to \(endpoint.map { "\($0)" } ?? "nowhere")")
            }
        case .none:
            break
        }
        // A responder whose session the initiator has not confirmed yet (its first packet over it lost)
        // still reports the handshake before, but decrypts over the new one: the tunnel works.
        let responded = state.next.map { end - $0.created < SimulatedWireGuard.rejectAfter } ?? false
        if reading.lastHandshake.map({ wall - $0 >= 180_000 }) ?? true, !responded {
            untruths.append("\(name)'s WireGuard has no handshake within 180 s")
        }
        if end - state.lastReceived > 3 * scenario.timings.persistentKeepalive.nanoseconds {
            untruths.append("\(name)'s WireGuard received nothing for \((end - state.lastReceived) / 1_000_000_000) s")
        }
    }

    /// After the members left each other: both machines closed, and WireGuard without the peer.
    mutating func recordLeaving(_ agents: [SimulatedAgent]) {
        for (side, agent) in agents.enumerated() {
            executed.formUnion(agent.executed)
            if agent.machine(peer(of: side)) != nil { leftovers.append("\(agent.member.name)'s machine is not closed after the peer left") }
            if agent.wireGuard.peers[peer(of: side)] != nil { leftovers.append("\(agent.member.name)'s WireGuard still has the peer") }
        }
    }

    /// How long a pair may take to settle: a minute, and a round of punches and its backoff more
    /// for every 2 % of loss; a pair that shares port prediction, the run.
    var convergenceBound: Nanoseconds {
        guard !scenario.sharesPortPrediction else { return scenario.length.nanoseconds }
        return (60 + Int64(scenario.conditions.loss * 100 / 2) * 30) * 1_000_000_000
    }

    /// Whether the fault breaks a path without a word (the relay forgetting its allocations): the
    /// connection learns it from the silence (``PeerTimings/silenceLimit``, read every
    /// ``PeerTimings/livenessPoll``), not from a router's rebinding its WireGuard sees at once.
    var silentFault = false

    /// How long after a fault a pair may still change: ``convergenceBound``, after a silent fault
    /// the silence limit and a liveness poll more.
    var recoveryBound: Nanoseconds {
        convergenceBound + (silentFault ? (scenario.timings.silenceLimit + scenario.timings.livenessPoll).nanoseconds : 0)
    }

    /// The properties this run broke, each as a sentence; empty when it has them all:
    /// - both sides end in Keepalive (a relayed side may be in an upgrade attempt), direct wherever
    ///   the cell allows it, relayed otherwise;
    /// - they settle on that path within ``convergenceBound`` and never leave it (no flap); after
    ///   a fault (a router's flush, the relay's or control server's restart) they are back on it
    ///   within the same bound, and stay;
    /// - what each side says is what WireGuard does (see `checkTruth`), and the tunnel works;
    /// - when the members leave, both machines close, WireGuard forgets the peer and the relay
    ///   holds nothing;
    /// - nothing schedules itself without end (the network's event limit).
    public var violations: [String] {
        var broken: [String] = runaway ? ["runaway: something scheduled itself without end"] : []
        for side in 0..<2 where !upgrading[side] && (states[side] != .keepalive || paths[side] != expectedPath) {
            broken.append("side \(side) ends \(states[side].map { "\($0)" } ?? "closed") (\(paths[side])), not keepalive (\(expectedPath))")
        }
        if let converged, converged > convergenceBound {
            broken.append("settled after \(converged / 1_000_000) ms, over \(convergenceBound / 1_000_000_000) s")
        }
        if flaps > 0 { broken.append("\(flaps) transitions off the settled path") }
        if let recovered, recovered > recoveryBound {
            broken.append("still changing \(recovered / 1_000_000) ms after the fault, over \(recoveryBound / 1_000_000_000) s")
        }
        return broken + untruths + leftovers
    }

    public var summary: String {
        let settled = converged.map { "settled \($0 / 1_000_000) ms" } ?? "never settled"
        let first = connected.map { "connected \($0 / 1_000_000) ms" } ?? "never connected"
        return "\(scenario): \(paths[0])/\(paths[1]), \(first), \(settled), \(transitions) transitions, \(handshakes) handshakes"
    }
}
