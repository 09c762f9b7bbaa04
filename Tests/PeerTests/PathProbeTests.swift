import Net
import Peer
import Testing

/// What confirms a path, and what the agent does when WireGuard drifts off it: pure, in wall
/// milliseconds given by the test.
@Suite struct PathProbeTests {
    let direct = Endpoint("198.51.100.7:41641")!
    let relay = Endpoint("203.0.113.9:40001")!
    let stale = Duration.seconds(180)

    func reading(_ endpoint: Endpoint?, handshake: Int64? = nil, received: UInt64 = 0) -> WireGuardReading {
        WireGuardReading(endpoint: endpoint, lastHandshake: handshake, received: received)
    }

    /// A handshake through the early relay 300 ms before the switch, in the same wall second, with
    /// WireGuard following the peer's next packet to the direct endpoint: it proves nothing about
    /// the direct path. Compared in whole seconds it would confirm the path.
    @Test func aHandshakeBeforeTheSwitchInTheSameSecondDoesNotConfirm() {
        let path = PathProbe(endpoint: direct, setAt: 10_500, receivedAtSet: 148)
        #expect(!path.confirmed(by: reading(direct, handshake: 10_200, received: 148), wall: 10_900, stale: stale))
        #expect(path.confirmed(by: reading(direct, handshake: 10_501, received: 148), wall: 10_900, stale: stale))
    }

    @Test func onlyWhatCameOverTheChosenPathCounts() {
        let path = PathProbe(endpoint: direct, setAt: 10_000, receivedAtSet: 0)
        #expect(!path.confirmed(by: reading(relay, handshake: 11_000, received: 500), wall: 12_000, stale: stale),
                "a handshake made through the relay after the switch left WireGuard there")
        #expect(!path.confirmed(by: reading(nil, handshake: 11_000, received: 500), wall: 12_000, stale: stale))
    }

    @Test func dataOverALiveSessionConfirmsAndAStaleOneDoesNot() {
        let path = PathProbe(endpoint: direct, setAt: 100_000, receivedAtSet: 1_000)
        // A session moved to the new path does not handshake again for up to two minutes.
        #expect(path.confirmed(by: reading(direct, handshake: 40_000, received: 1_032), wall: 101_000, stale: stale))
        #expect(!path.confirmed(by: reading(direct, handshake: 40_000, received: 1_000), wall: 101_000, stale: stale),
                "nothing received since the path was set")
        #expect(!path.confirmed(by: reading(direct, handshake: 40_000, received: 1_032), wall: 220_000, stale: stale),
                "data over a session past REJECT_AFTER_TIME is not WireGuard's")
    }

    @Test func withoutAHandshakeTheInitiationReceivedConfirms() {
        let path = PathProbe(endpoint: direct, setAt: 5_000, receivedAtSet: 0)
        #expect(path.confirmed(by: reading(direct, received: 148), wall: 5_200, stale: stale))
        #expect(!path.confirmed(by: reading(direct, received: 0), wall: 5_200, stale: stale))
    }

    @Test func theCounterStartsWhereThePathWasChosen() {
        let before = reading(relay, handshake: 1_000, received: 900)
        #expect(PathProbe.chosen(direct, at: 2_000, before: before, previous: relay, deferred: false).receivedAtSet == 900,
                "what came over the relay does not count for the direct path")
        let roamed = reading(direct, handshake: 1_000, received: 900)
        #expect(PathProbe.chosen(direct, at: 2_000, before: roamed, previous: relay, deferred: false).receivedAtSet == 0,
                "WireGuard roamed there on its own: an authenticated packet came over it")
        let fresh = reading(nil, received: 0)
        #expect(PathProbe.isFresh(fresh) && !PathProbe.isFresh(before) && !PathProbe.isFresh(nil))
        #expect(PathProbe.chosen(direct, at: 2_000, before: fresh, previous: nil, deferred: true).receivedAtSet == 0)
    }

    @Test func onAFreshPeerTheLargerKeyWaitsForItsTurn() {
        #expect(PathProbe.holdsBack(fresh: true, localKeyIsSmaller: false))
        #expect(!PathProbe.holdsBack(fresh: true, localKeyIsSmaller: true))
        #expect(!PathProbe.holdsBack(fresh: false, localKeyIsSmaller: false))
        var path = PathProbe(endpoint: direct, setAt: 0, receivedAtSet: 0, deferred: true)
        #expect(path.drift(reading(relay), isRelay: { $0 == relay }, working: false) == .none, "held back: nothing to keep")
        path.release()
        #expect(!path.deferred)
    }

    /// The path-truth race: a relayed packet that arrives after the switch takes WireGuard back to
    /// the relay, and each side, receiving from the relay, would keep sending to it.
    @Test func wireGuardFollowingALatePacketToTheRelayIsSetBack() {
        var path = PathProbe(endpoint: direct, setAt: 1_000, receivedAtSet: 10)
        #expect(path.drift(reading(relay), isRelay: { $0 == relay }, working: true) == .setBack)
        let rebound = Endpoint("198.51.100.7:50000")!
        #expect(path.drift(reading(rebound), isRelay: { $0 == relay }, working: true) == .follow(rebound))
        let elsewhere = Endpoint("198.51.100.8:50000")!
        #expect(path.drift(reading(elsewhere), isRelay: { $0 == relay }, working: false) == .none,
                "a path not confirmed yet does not follow to another address")
        #expect(path.drift(reading(direct), isRelay: { $0 == relay }, working: true) == .none)
        path.restart(at: 3_000, received: 40)
        #expect(path.setAt == 3_000 && path.receivedAtSet == 40)
        path.follow(rebound)
        #expect(path.endpoint == rebound)
    }

    /// Port-restricted ↔ symmetric: the spray usually hits several of the symmetric peer's fan
    /// ports, and each side pins the first answer it gets, so the peer may send from another fan
    /// port than the one this side pinned. An unconfirmed path follows the peer to another port of
    /// the pinned address (it authenticated there); to another address it does not.
    @Test func anUnconfirmedPathFollowsThePeerToAnotherPortOfThePinnedAddress() {
        let path = PathProbe(endpoint: direct, setAt: 1_000, receivedAtSet: 10)
        let otherFanPort = Endpoint(direct.address, direct.port &+ 1)
        let answered = reading(otherFanPort, handshake: 1_500, received: 40)
        #expect(path.drift(answered, isRelay: { $0 == relay }, working: false, peerFans: true) == .follow(otherFanPort))
        #expect(path.drift(answered, isRelay: { $0 == relay }, working: false) == .none,
                "without a fanning peer (a hairpinning router's other port) it waits for confirmation")
        #expect(!path.confirmed(by: answered, wall: 2_000, stale: .seconds(180)), "confirmed only once followed")
        var followed = path
        followed.follow(otherFanPort)
        #expect(followed.confirmed(by: answered, wall: 2_000, stale: .seconds(180)))
    }

    @Test func theTwoSidesAskForAHandshakeAtDifferentSeconds() {
        let smaller = (0...10).filter { PathProbe.asksHandshake(atSecond: Int64($0), localKeyIsSmaller: true) }
        let larger = (0...10).filter { PathProbe.asksHandshake(atSecond: Int64($0), localKeyIsSmaller: false) }
        #expect(smaller == [2, 5, 8] && larger == [3, 6, 9])
    }

    @Test func handshakeAgesAreWholeSecondsAsWireGuardReportsThem() {
        #expect(PathProbe.handshakeAge(10_999, wall: 12_001) == .seconds(2))
        #expect(PathProbe.handshakeAge(20_000, wall: 12_000) == .zero, "a handshake in the future is 0 s old")
    }
}
