import EventLoop
import Peer
import StateChart
import Testing

/// Every edge of the peer chart, driven through a scheduler in virtual time.
@Suite struct PeerChartTests {
    @Test func theChartIsValidWithDefaultAndCustomTimings() {
        _ = PeerChart.chart()
        var timings = PeerTimings()
        timings.punchPackets = 1
        timings.confirmPoll = .seconds(20)
        _ = PeerChart.chart(timings)
    }

    static func happyDirectPath(_ peer: PeerHarness) {
        #expect(peer.state == .discovering)
        #expect(peer.takeActions() == [.requestCandidates])
        peer.send(.candidatesKnown)
        #expect(peer.state == .detecting && peer.takeActions() == [.detectNAT, .allocateRelay])
        peer.send(.natKnown(directPossible: true))
        #expect(peer.state == .punching && peer.takeActions() == [.startPunch])
        // The seed's burst: 5 packets 100 ms apart (one on entry, four on the timer).
        peer.wait(.milliseconds(399))
        #expect(peer.takeActions() == [.sendPunch, .sendPunch, .sendPunch])
        peer.wait(.milliseconds(1))
        #expect(peer.takeActions() == [.sendPunch])
        peer.send(.punchAcked)
        #expect(peer.state == .direct && peer.takeActions() == [.setDirectEndpoint, .enableKeepalive, .endPunch])
        peer.wait(.seconds(1))
        #expect(peer.takeActions() == [.readHandshake])
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(400), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .direct)
        #expect(peer.takeActions() == [.releaseRelay])
        peer.wait(.seconds(30))
        #expect(peer.takeActions() == [.readHandshake, .readHandshake, .readHandshake])
        // A direct path ignores the upgrade timer.
        #expect(peer.state == .keepalive)
    }

    /// Open or full cone on both sides: straight to Direct, no punch; the early relay is released
    /// once WireGuard confirms the path.
    /// Open or full cone on both sides: the punch starts at once (no instant to wait for), and
    /// Direct follows the ACK of this side's own PUNCH, never the claimed endpoint alone.
    static func bothReachablePunchBeforeDirect(_ peer: PeerHarness) {
        peer.reach(.detecting)
        peer.send(.natKnown(directPossible: true, bothReachable: true))
        #expect(peer.state == .punching && peer.takeActions() == [.startPunch])
        peer.send(.punchAcked)
        #expect(peer.state == .direct && peer.takeActions() == [.setDirectEndpoint, .enableKeepalive, .endPunch])
        peer.wait(.seconds(1))
        #expect(peer.takeActions() == [.readHandshake])
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(100), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .direct && peer.takeActions() == [.releaseRelay])
    }

    static func discoveryRetries(_ peer: PeerHarness) {
        #expect(peer.takeActions() == [.requestCandidates])
        peer.wait(.milliseconds(9999))
        #expect(peer.takeActions().isEmpty)
        peer.wait(.milliseconds(1))
        #expect(peer.state == .discovering && peer.takeActions() == [.requestCandidates])
        peer.wait(.seconds(10))
        #expect(peer.takeActions() == [.requestCandidates])
    }

    static func detectionTimeoutPunchesAnyway(_ peer: PeerHarness) {
        peer.reach(.detecting)
        peer.wait(.milliseconds(2999))
        #expect(peer.state == .detecting)
        peer.wait(.milliseconds(1))
        #expect(peer.state == .punching && peer.takeActions() == [.startPunch])
    }

    static func failedPunchesFallBackToTheRelay(_ peer: PeerHarness) {
        peer.reach(.punching)
        peer.wait(.milliseconds(2400))   // first burst: 4 more packets, then the ACK timeout
        #expect(peer.state == .punching, "a second burst is tried")
        #expect(peer.takeActions() == [.sendPunch, .sendPunch, .sendPunch, .sendPunch, .startPunch])
        peer.wait(.milliseconds(2400))
        #expect(peer.state == .relaying)
        #expect(peer.takeActions() == [.sendPunch, .sendPunch, .sendPunch, .sendPunch, .endPunch, .allocateRelay])
        // No relay granted: the relay timeout starts a new round of two attempts, its first burst a
        // fresh session (the agent starts one when `punchBursts` is 1). Continuing the old session, a
        // pair whose first punches were lost under load punched past each other for good.
        peer.send(.relayFailed)
        peer.wait(.seconds(15))
        #expect(peer.state == .relaying && peer.takeActions().last == .readHandshake, "the window's end reads once more")
        peer.send(.wireGuardRead(handshakeAge: nil, pathConfirmed: false))
        #expect(peer.state == .punching && peer.context.punchBursts == 1 && peer.takeActions().last == .startPunch)
        peer.wait(.milliseconds(2400))
        #expect(peer.state == .punching && peer.context.punchBursts == 2, "the new round has its second attempt too")
        peer.wait(.milliseconds(2400))
        #expect(peer.state == .relaying && peer.takeActions().last == .allocateRelay)
    }

    /// The peer joined the attempt late (its announcement came 0.4 s after ours, under load): the ACK
    /// arrives after the timeout sent this side to Relaying. The direct path is open: take it (else
    /// both sides waited 15 s for the next round with the path open, in the party bench).
    static func lateAckTakesTheDirectPath(_ peer: PeerHarness) {
        peer.reach(.punching)
        peer.wait(.milliseconds(4800))
        #expect(peer.state == .relaying)
        _ = peer.takeActions()
        peer.send(.punchAcked)
        #expect(peer.state == .direct && peer.takeActions() == [.setDirectEndpoint, .enableKeepalive, .endPunch])
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(100), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .direct)
    }

    static func relayPathWithFailuresAndUpgrades(_ peer: PeerHarness) {
        peer.reach(.detecting)
        peer.send(.natKnown(directPossible: false))
        #expect(peer.state == .relaying && peer.takeActions() == [.allocateRelay])
        peer.send(.relayFailed)
        #expect(peer.state == .relaying && peer.takeActions().isEmpty, "no relay: no new request before the relay timeout")
        peer.wait(.seconds(15))
        #expect(peer.state == .relaying && peer.takeActions().last == .readHandshake)
        peer.send(.wireGuardRead(handshakeAge: nil, pathConfirmed: false))
        #expect(peer.state == .punching && peer.takeActions().last == .startPunch, "relay timeout: try the direct path again")
        peer.wait(.milliseconds(4800))
        #expect(peer.state == .relaying && peer.takeActions().last == .allocateRelay, "the punch failed: allocate again")
        peer.send(.relayReady)
        #expect(peer.takeActions() == [.setRelayEndpoint, .enableKeepalive])
        peer.wait(.seconds(1))
        #expect(peer.takeActions() == [.readHandshake])
        peer.send(.wireGuardRead(handshakeAge: nil, pathConfirmed: false))
        #expect(peer.state == .relaying)
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(100), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .relayed)
        _ = peer.takeActions()
        // Upgrade attempts back off: 30 s, then 60 s after a failed attempt.
        peer.wait(.milliseconds(29_999))
        #expect(peer.state == .keepalive)
        peer.wait(.milliseconds(1))
        #expect(peer.state == .punching)
        peer.wait(.milliseconds(4800))
        #expect(peer.state == .keepalive && peer.context.path == .relayed && peer.context.upgradeFailures == 1)
        #expect(peer.takeActions().suffix(2) == [.endPunch, .readHandshake], "back on the relay, WireGuard is read at once")
        peer.wait(.milliseconds(59_999))
        #expect(peer.state == .keepalive)
        peer.wait(.milliseconds(1))
        #expect(peer.state == .punching)
        peer.send(.punchAcked)
        #expect(peer.state == .direct)
        peer.send(.wireGuardRead(handshakeAge: .seconds(1), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .direct && peer.context.upgradeFailures == 0)
        #expect(peer.takeActions().suffix(1) == [.releaseRelay])
    }

    static func deadRelayIsAllocatedAgain(_ peer: PeerHarness) {
        peer.reachRelayedKeepalive()
        // The relay died: three keepalives without a word. The punch fails, so the relayed path is
        // not kept (it is dead): a new allocation, possibly on another relay.
        peer.send(.wireGuardRead(handshakeAge: .seconds(20), pathConfirmed: true, pathLost: true))
        #expect(peer.state == .punching)
        peer.wait(.milliseconds(4800))
        #expect(peer.state == .relaying && peer.takeActions().last == .allocateRelay)
    }

    static func earlyRelayCarriesTrafficUntilTheDirectPath(_ peer: PeerHarness) {
        peer.reach(.detecting)
        // Detecting asked for a relay on entry; its grant points WireGuard there at once.
        peer.send(.relayReady)
        #expect(peer.state == .detecting && peer.takeActions() == [.setRelayEndpoint, .enableKeepalive])
        peer.send(.relayFailed)
        #expect(peer.state == .detecting && peer.takeActions().isEmpty, "a refused early relay changes nothing")
        peer.send(.natKnown(directPossible: true))
        #expect(peer.state == .punching && peer.takeActions() == [.startPunch])
        peer.send(.relayReady)
        #expect(peer.state == .punching && peer.takeActions() == [.setRelayEndpoint, .enableKeepalive], "a grant while punching")
        peer.send(.relayFailed)
        #expect(peer.state == .punching && peer.takeActions().isEmpty)
        // The punch fails: Relaying allocates (the executor reuses the early grant).
        peer.wait(.milliseconds(4800))
        #expect(peer.state == .relaying && peer.takeActions().last == .allocateRelay)
    }

    static func directWithoutHandshakeFallsBack(_ peer: PeerHarness) {
        peer.reach(.direct)
        peer.wait(.seconds(10))
        #expect(peer.state == .direct, "the window's end reads WireGuard once more")
        #expect(peer.takeActions().filter { $0 == .readHandshake }.count == 10)
        peer.send(.wireGuardRead(handshakeAge: nil, pathConfirmed: false))
        #expect(peer.state == .relaying && peer.takeActions().last == .allocateRelay)
    }

    /// A path confirmed in the window's last second (after its last poll) counts: the read at the
    /// window's end finds it (a fan side whose handshake came 9.1 s in gave up at 10 s).
    static func aPathConfirmedInTheLastSecondCounts(_ peer: PeerHarness) {
        peer.reach(.direct)
        peer.wait(.seconds(10))
        _ = peer.takeActions()
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(900), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .direct)
    }

    static func staleHandshakeRepunches(_ peer: PeerHarness) {
        peer.reach(.keepalive)
        peer.send(.wireGuardRead(handshakeAge: .seconds(179), pathConfirmed: true))
        #expect(peer.state == .keepalive)
        peer.send(.wireGuardRead(handshakeAge: .seconds(185), pathConfirmed: true, pathLost: false))
        #expect(peer.state == .keepalive, "an old handshake or a silence the connection has not found lost (a probe pending) is not stale")
        peer.send(.wireGuardRead(handshakeAge: .seconds(20), pathConfirmed: true, pathLost: true))
        #expect(peer.state == .punching && peer.takeActions() == [.rediscoverNAT, .startPunch], "a lost path is gone")
        peer.send(.punchAcked)
        peer.send(.wireGuardRead(handshakeAge: .seconds(1), pathConfirmed: true))
        #expect(peer.state == .keepalive)
        _ = peer.takeActions()
        peer.send(.wireGuardRead(handshakeAge: nil, pathConfirmed: false))
        #expect(peer.state == .keepalive, "no handshake yet is probed first (the peer's initiation was answered)")
        peer.send(.wireGuardRead(handshakeAge: nil, pathConfirmed: false, pathLost: true))
        #expect(peer.state == .punching && peer.takeActions() == [.rediscoverNAT, .startPunch])
    }

    static func aPinWhileRelayedTakesTheDirectPath(_ peer: PeerHarness) {
        peer.reachRelayedKeepalive()
        peer.send(.punchAcked)
        #expect(peer.state == .direct && peer.takeActions() == [.setDirectEndpoint, .enableKeepalive, .endPunch])
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(200), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .direct && peer.takeActions() == [.releaseRelay])
    }

    static func aMovedRelayIsTakenOver(_ peer: PeerHarness) {
        peer.reachRelayedKeepalive()
        peer.send(.relayReady)
        #expect(peer.state == .relaying && peer.takeActions() == [.allocateRelay], "Relaying takes the moved allocation over")
        peer.send(.relayReady)
        #expect(peer.takeActions() == [.setRelayEndpoint, .enableKeepalive])
        peer.send(.wireGuardRead(handshakeAge: .milliseconds(200), pathConfirmed: true))
        #expect(peer.state == .keepalive && peer.context.path == .relayed)
        let direct = PeerHarness()
        direct.reach(.keepalive)
        direct.send(.relayReady)
        #expect(direct.state == .keepalive && direct.takeActions().isEmpty, "on the direct path: no relay to follow")
    }

    static func endpointChangeRepunches(_ peer: PeerHarness) {
        peer.reach(.keepalive)
        peer.send(.endpointChanged)
        #expect(peer.state == .punching && peer.takeActions() == [.rediscoverNAT, .startPunch], "a new public address may be this side's too")
    }

    static func peerLeavingClosesFromEveryState(_ state: PeerState) -> PeerHarness {
        let peer = PeerHarness()
        peer.reach(state)
        peer.send(.peerLeft)
        #expect(peer.state == .closed)
        #expect(peer.takeActions() == [.removePeer, .releaseRelay])
        peer.wait(.seconds(3600))
        #expect(peer.takeActions().isEmpty, "no timer of an earlier state fires after closing")
        #expect(peer.scheduler.nextDeadline == nil)
        return peer
    }

    @Test func happyDirectPath() { Self.happyDirectPath(PeerHarness()) }
    @Test func discoveryRetries() { Self.discoveryRetries(PeerHarness()) }
    @Test func bothReachablePunchBeforeDirect() { Self.bothReachablePunchBeforeDirect(PeerHarness()) }
    @Test func detectionTimeoutPunchesAnyway() { Self.detectionTimeoutPunchesAnyway(PeerHarness()) }
    @Test func failedPunchesFallBackToTheRelay() { Self.failedPunchesFallBackToTheRelay(PeerHarness()) }
    @Test func relayPathWithFailuresAndUpgrades() { Self.relayPathWithFailuresAndUpgrades(PeerHarness()) }
    @Test func lateAckTakesTheDirectPath() { Self.lateAckTakesTheDirectPath(PeerHarness()) }
    @Test func directWithoutHandshakeFallsBack() { Self.directWithoutHandshakeFallsBack(PeerHarness()) }
    @Test func aPathConfirmedInTheLastSecondCounts() { Self.aPathConfirmedInTheLastSecondCounts(PeerHarness()) }
    @Test func deadRelayIsAllocatedAgain() { Self.deadRelayIsAllocatedAgain(PeerHarness()) }
    @Test func earlyRelayCarriesTrafficUntilTheDirectPath() { Self.earlyRelayCarriesTrafficUntilTheDirectPath(PeerHarness()) }
    @Test func staleHandshakeRepunches() { Self.staleHandshakeRepunches(PeerHarness()) }
    @Test func endpointChangeRepunches() { Self.endpointChangeRepunches(PeerHarness()) }
    @Test func aMovedRelayIsTakenOver() { Self.aMovedRelayIsTakenOver(PeerHarness()) }
    @Test func aPinWhileRelayedTakesTheDirectPath() {
        Self.aPinWhileRelayedTakesTheDirectPath(PeerHarness())
        let direct = PeerHarness()
        direct.reach(.keepalive)
        direct.send(.punchAcked)
        #expect(direct.state == .keepalive && direct.takeActions().isEmpty, "on the direct path already: nothing to take")
    }
    @Test(arguments: [PeerState.discovering, .detecting, .punching, .direct, .relaying, .keepalive])
    func peerLeavingCloses(from state: PeerState) { _ = Self.peerLeavingClosesFromEveryState(state) }

    @Test func everyRowOfTheChartIsExercised() {
        var fired = Set<Int>()
        let scenarios: [(PeerHarness) -> Void] = [
            Self.happyDirectPath, Self.discoveryRetries, Self.detectionTimeoutPunchesAnyway, Self.bothReachablePunchBeforeDirect,
            Self.failedPunchesFallBackToTheRelay, Self.relayPathWithFailuresAndUpgrades, Self.lateAckTakesTheDirectPath,
            Self.directWithoutHandshakeFallsBack, Self.staleHandshakeRepunches, Self.endpointChangeRepunches,
            Self.deadRelayIsAllocatedAgain, Self.earlyRelayCarriesTrafficUntilTheDirectPath, Self.aPinWhileRelayedTakesTheDirectPath,
            Self.aMovedRelayIsTakenOver, Self.aPathConfirmedInTheLastSecondCounts,
        ]
        for scenario in scenarios {
            let peer = PeerHarness()
            scenario(peer)
            fired.formUnion(peer.rowsFired)
        }
        for state in [PeerState.discovering, .detecting, .punching, .direct, .relaying, .keepalive] {
            fired.formUnion(Self.peerLeavingClosesFromEveryState(state).rowsFired)
        }
        let chart = PeerChart.chart()
        let missing = Set(chart.rows.indices).subtracting(fired).map { index in
            let row = chart.rows[index]
            return "\(row.source) --\(row.event) [\(row.condition?.name ?? "")]--> \(row.destination)"
        }
        #expect(missing.isEmpty, "rows never fired: \(missing)")
    }

    @Test func timingsAreConfigurable() {
        var timings = PeerTimings()
        timings.punchPackets = 3
        timings.punchInterval = .milliseconds(50)
        timings.punchAckTimeout = .seconds(1)
        timings.punchAttempts = 1
        let peer = PeerHarness(timings: timings)
        peer.reach(.punching)
        peer.wait(.milliseconds(1099))
        #expect(peer.state == .punching)
        #expect(peer.takeActions() == [.sendPunch, .sendPunch])
        peer.wait(.milliseconds(1))
        #expect(peer.state == .relaying)
    }

    @Test func upgradeBackoffDoublesUpToItsCap() {
        let timings = PeerTimings()
        #expect((0..<7).map { timings.upgradeDelay(attempt: $0) } ==
                [.seconds(30), .seconds(60), .seconds(120), .seconds(240), .seconds(480), .seconds(600), .seconds(600)])
        #expect(timings.upgradeDelay(attempt: 1000) == .seconds(600))
    }
}
