import EventLoop
import Peer
import Time

/// SplitMix64: a small, fast, seedable generator, so a simulation is reproducible from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A pretend network for the peer chart: answers each action after a random delay, sometimes
/// not at all, from a seeded generator — so the same seed gives the same run, event for event.
final class SimulatedWorld: ActionExecutor {
    typealias Spec = PeerChart
    weak var scheduler: Scheduler<SimulatedWorld>?
    var random: SplitMix64
    /// Per machine: whether a direct path can work at all.
    var directWorks: [Bool] = []
    /// Per machine: whether WireGuard's current path carries a handshake.
    var pathUp: [Bool] = []

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    func chance(_ probability: Double) -> Bool { Double.random(in: 0..<1, using: &random) < probability }
    func delay(_ range: ClosedRange<Int>) -> Duration { .milliseconds(Int.random(in: range, using: &random)) }

    func execute(_ action: PeerAction, for id: MachineID) {
        guard let scheduler else { return }
        let index = Int(id.index)
        while directWorks.count <= index { directWorks.append(chance(0.75)); pathUp.append(false) }
        switch action {
        case .requestCandidates:
            if chance(0.95) { scheduler.post(.candidatesKnown, to: id, after: delay(5...300)) }
        case .detectNAT:
            if chance(0.9) {
                let possible = directWorks[index] || chance(0.2)
                scheduler.updateContext(of: id) { $0.directPossible = possible }
                scheduler.post(.natKnown, to: id, after: delay(20...800))
            }
        case .startPunch, .sendPunch:
            if directWorks[index], chance(0.3) { scheduler.post(.punchAcked, to: id, after: delay(10...250)) }
        case .setDirectEndpoint, .setRelayEndpoint:
            pathUp[index] = action == .setRelayEndpoint || chance(0.95)
        case .allocateRelay:
            pathUp[index] = false
            scheduler.post(chance(0.9) ? .relayReady : .relayFailed, to: id, after: delay(20...400))
        case .readHandshake:
            let up = pathUp[index] && chance(0.995)
            scheduler.updateContext(of: id) {
                $0.handshakeAge = up ? .seconds(Int.random(in: 0...100, using: &random)) : .seconds(200)
                $0.pathConfirmed = up
                $0.pathLost = !up
            }
            scheduler.post(.wireGuardRead, to: id)
        case .enableKeepalive, .releaseRelay, .removePeer, .endPunch, .rediscoverNAT:
            break
        }
    }
}

/// Runs `peers` peer machines through full lifecycles in virtual time: each joins, connects,
/// lives a random while, and leaves. Returns a fingerprint of the whole trace and counts.
func simulateParty(peers: Int, seed: UInt64, minutes: Int) -> (fingerprint: UInt64, transitions: Int, closed: Int, reachedKeepalive: Int) {
    let clock = VirtualClock()
    let world = SimulatedWorld(seed: seed)
    let scheduler = Scheduler(chart: PeerChart.chart(), clock: clock, executor: world)
    world.scheduler = scheduler
    var fingerprint: UInt64 = 0xCBF2_9CE4_8422_2325
    var keepalive = Set<MachineID>()
    scheduler.onTransition = { record in
        for value in [UInt64(record.time), UInt64(record.machine.index), UInt64(record.transition.row)] {
            fingerprint = (fingerprint ^ value) &* 0x100_0000_01B3
        }
        if record.transition.to == .keepalive { keepalive.insert(record.machine) }
    }
    var lifetimes = SplitMix64(seed: seed ^ 0xA5A5)
    for index in 0..<peers {
        let id = scheduler.add(name: "peer\(index)", context: PeerContext())
        let lifetime = Int.random(in: 60...(minutes - 1) * 60, using: &lifetimes)
        scheduler.post(.peerLeft, to: id, after: .seconds(lifetime))
    }
    scheduler.runVirtual(clock, until: Int64(minutes) * 60_000_000_000)
    let closed = (0..<peers).filter { scheduler.machine(MachineID(Int32($0)))?.state == .closed }.count
    return (fingerprint, scheduler.statistics.transitions, closed, keepalive.count)
}
