import Net
import Peer
import Punch
import STUN
import Time

/// One pair's punch rounds on the simulated network, as two agents and their control server run
/// them: the pair takes the agent's plan from the two detected types; each round the control
/// server announces a session (one datagram: a side that misses it punches in a session of its own
/// once its detection timeout expires); each side bursts to the other's LAN and public endpoints,
/// sprays or fans as its `PortPredictionRole` says, twice; a round that ends without both pins is
/// followed by another at the upgrade backoff, up to `rounds`. Event-driven: many pairs run at once.
final class PairPunch {
    let members: [SimulatedMember]
    /// Each side's public address as the control server sees it.
    let observed: [IPAddress]
    let plan: DirectPathPlan
    let timings: PeerTimings
    let rounds: Int
    private unowned let network: SimulatedNetwork
    /// When the first round began, and the round under way (1-based; 0 before the first).
    private(set) var began: Nanoseconds = 0
    private(set) var round = 0
    /// Whether the pair is done: direct, out of rounds, or relayed by plan.
    private(set) var gaveUp = false

    init(_ a: SimulatedMember, _ b: SimulatedMember, observed: [IPAddress], timings: PeerTimings, rounds: Int, on network: SimulatedNetwork) {
        members = [a, b]
        self.observed = observed
        self.timings = timings
        self.rounds = rounds
        self.network = network
        plan = DirectPathPlan(local: a.natType, remote: b.natType, withoutNAT: observed[0] == observed[1])
    }

    /// Both sides pinned the other.
    var direct: Bool { pin(0) != nil && pin(1) != nil }
    /// Direct, or given up.
    var settled: Bool { direct || gaveUp }

    /// Side `index`'s pin of the other.
    func pin(_ index: Int) -> (endpoint: Endpoint, at: Nanoseconds, throughFan: Bool)? {
        members[index].pins[members[1 - index].index]
    }

    /// From the first round's start to both pins.
    var timeToDirect: Nanoseconds? {
        guard let a = pin(0), let b = pin(1) else { return nil }
        return max(a.at, b.at) - began
    }

    /// Starts the first round now (relayed at once when the plan says so).
    func start() {
        began = network.clock.now
        guard plan.directPossible else {
            gaveUp = true
            return
        }
        begin()
    }

    private func begin() {
        round += 1
        let announced = network.random.next()
        let roundStart = network.clock.now
        var latestStart = roundStart
        for (index, member) in members.enumerated() {
            let peer = members[1 - index]
            member.pins[peer.index] = nil
            let missed = network.random.happens(network.conditions.loss)
            let session = missed ? network.random.next() : announced
            let start = roundStart + (missed ? timings.detection.nanoseconds : 500_000_000)
            latestStart = max(latestStart, start)
            let candidates = [peer.local] + (peer.report.map { [$0.publicEndpoint] } ?? [])
            let observed = observed[1 - index]
            let role = PortPredictionRole(local: member.natType, remote: peer.natType, observed: observed,
                                          reachable: peer.report?.publicEndpoint, withoutNAT: self.observed[0] == self.observed[1])
            network.after(.nanoseconds(start - network.clock.now)) { [unowned network] in
                network.note("\(member.name) punches \(peer.name) in session \(session)\(missed ? " (missed the announcement)" : "")")
                member.driver.start(peer.index, PunchSession(key: PairKey(localPrivateKey: member.privateKey, localPublicKey: member.publicKey,
                                                                          remotePublicKey: peer.publicKey)!,
                                                             session: session, candidates: candidates,
                                                             learned: member.driver.learned(peer.index)),
                                    observed: observed)
            }
            // Each attempt starts with the side's part in port prediction, as the agent's does.
            for attempt in 0..<timings.punchAttempts {
                for packet in 0..<timings.punchPackets {
                    let at = start + (timings.punchAttempt * attempt + timings.punchInterval * packet).nanoseconds
                    network.after(.nanoseconds(at - network.clock.now)) { [unowned network] in
                        // A side that pinned is Direct: it answers the peer's PUNCHes, sends none.
                        guard member.pins[peer.index] == nil else { return }
                        switch role {
                        case .spray(let address) where packet == 0:
                            let sent = member.driver.probe(peer.index, PortPrediction.spray(at: address, using: &network.random))
                            network.note("\(member.name) sprays \(sent) guesses at \(address) (peer \(peer.index))")
                        case .fan(let target) where packet == 0:
                            member.openFan(for: peer.index, toward: target)
                        default:
                            break
                        }
                        member.driver.burst(peer.index)
                    }
                }
            }
        }
        let end = latestStart + (timings.punchAttempt * timings.punchAttempts).nanoseconds
        network.after(.nanoseconds(end - network.clock.now)) { [self] in
            guard !direct else { return }
            for (index, member) in members.enumerated() { member.closeFan(for: members[1 - index].index) }
            guard round < rounds else {
                gaveUp = true
                return
            }
            network.after(timings.upgradeDelay(attempt: round - 1)) { [self] in begin() }
        }
    }
}
