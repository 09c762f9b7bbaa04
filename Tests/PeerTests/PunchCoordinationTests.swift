import Peer
import STUN
import Testing

/// How the two members of a pair agree on punches, decided without sockets: in Detecting, at the
/// start of an attempt, and when the control server announces a punch in each state.
@Suite struct PunchCoordinationTests {
    let second: Int64 = 1_000_000_000

    func facts(_ local: NATType, _ peer: NATType, detecting: Bool = false, reflexive: Bool = true, peerReflexive: Bool = true,
               smaller: Bool = true, withoutNAT: Bool = false) -> PunchCoordination.Facts {
        PunchCoordination.Facts(localNAT: local, detecting: detecting, reflexiveKnown: reflexive, peerNAT: peer,
                                peerReflexiveKnown: peerReflexive, localKeyIsSmaller: smaller, withoutNAT: withoutNAT)
    }

    /// Two members behind one symmetric NAT (one public address): a punch over their LAN, not the
    /// relay; nor does this side wait for its own type.
    @Test func membersBehindOnePublicAddressPunchWhateverTheirNATs() {
        var coordination = PunchCoordination()
        #expect(coordination.detect(facts(.symmetric, .symmetric, withoutNAT: true), now: 0) == .requestPunch)
        var detecting = PunchCoordination()
        #expect(detecting.detect(facts(.unknown, .symmetric, detecting: true, withoutNAT: true), now: 0) == .requestPunch)
    }

    @Test func detectingWaitsForWhatThePunchNeeds() {
        var coordination = PunchCoordination()
        #expect(coordination.detect(facts(.unknown, .symmetric, detecting: true), now: 0) == .wait,
                "a symmetric peer: this side's own type decides between punch and relay")
        #expect(coordination.detect(facts(.unknown, .fullCone, detecting: true, reflexive: false), now: 0) == .wait,
                "this side's public endpoint is not known to the party yet")
        #expect(coordination.detect(facts(.fullCone, .fullCone, peerReflexive: false), now: 0) == .wait)
        #expect(!coordination.requested)
    }

    @Test func detectingDecidesByTheNATPair() {
        var coordination = PunchCoordination()
        #expect(coordination.detect(facts(.symmetric, .symmetric), now: 0) == .relay)
        #expect(coordination.detect(facts(.open, .fullCone), now: 0) == .punchNow)
        #expect(coordination.detect(facts(.unknown, .fullCone, detecting: true), now: 0) == .requestPunch,
                "detection still running, the peer not symmetric: punch on the announced instant")
        #expect(coordination.detect(facts(.portRestrictedCone, .fullCone), now: 0) == .awaitAnnouncement, "asked once")
        var larger = PunchCoordination()
        #expect(larger.detect(facts(.portRestrictedCone, .restrictedCone, smaller: false), now: 0) == .awaitAnnouncement,
                "the member with the larger key waits for the announcement of the other's request")
    }

    @Test func anAnnouncementHeardWhileDetectingSetsTheInstant() {
        var coordination = PunchCoordination()
        let joining = coordination.announce(startMillis: 1_000_800, state: .detecting, pinned: false, hasRelay: false,
                                            wall: 1_000_000, now: 50 * second)
        #expect(joining == .detect)
        #expect(coordination.detect(facts(.portRestrictedCone, .symmetric), now: 50 * second) == .punchAfter(.milliseconds(800)))
        let start = coordination.start(bothReachable: false, now: 50 * second + 800_000_000, fresh: 7)
        #expect(start.session == 1_000_800 && start.coordinated && !start.requestPunch)
        #expect(coordination.announced == nil && coordination.session == 1_000_800)
    }

    @Test func anAttemptWithoutAnnouncementMakesItsOwnSessionAndAsks() {
        var coordination = PunchCoordination()
        _ = coordination.announce(startMillis: 1_000_000, state: .detecting, pinned: false, hasRelay: false, wall: 1_000_000, now: 0)
        // The announced instant is 3 s gone when Punching is entered (the detection timeout's edge).
        let start = coordination.start(bothReachable: false, now: 3 * second, fresh: 42)
        #expect(start.session == 42 && !start.coordinated && start.requestPunch)
        var open = PunchCoordination()
        #expect(open.start(bothReachable: true, now: 0, fresh: 9).requestPunch == false, "no filter to open: no instant to agree on")
    }

    @Test func anAnnouncedStartIsAtMostFiveSecondsAhead() {
        var coordination = PunchCoordination()
        _ = coordination.announce(startMillis: 2_000_000, state: .discovering, pinned: false, hasRelay: false, wall: 1_000_000, now: 0)
        #expect(coordination.announced?.at == 5 * second)
        _ = coordination.announce(startMillis: 999_000, state: .discovering, pinned: false, hasRelay: false, wall: 1_000_000, now: 0)
        #expect(coordination.announced?.at == 0, "a start in the past is now")
    }

    /// The same punch announced again is not restarted: that dropped the answers to the running
    /// attempt, and under load pairs never pinned.
    @Test func punchingJoinsOnlyAPunchThatReplacesItsOwn() {
        var coordination = PunchCoordination()
        coordination.begin(session: 77, coordinated: false)
        #expect(coordination.announce(startMillis: 1_000_300, state: .punching, pinned: false, hasRelay: false, wall: 1_000_000, now: 0)
                == .join(session: 1_000_300, after: .milliseconds(300)), "this side's own session gives way")
        #expect(coordination.sessionCoordinated && coordination.announced == nil)
        #expect(coordination.announce(startMillis: 1_000_300, state: .punching, pinned: false, hasRelay: false, wall: 1_000_100, now: 0)
                == PunchCoordination.Joining.none, "the running punch, announced again")
        #expect(coordination.announce(startMillis: 1_004_000, state: .punching, pinned: false, hasRelay: false, wall: 1_000_200, now: 0)
                == .join(session: 1_004_000, after: .milliseconds(3_800)), "a later punch the peer is in")
        #expect(coordination.announce(startMillis: 1_009_000, state: .punching, pinned: true, hasRelay: false, wall: 1_005_000, now: 0)
                == PunchCoordination.Joining.none, "pinned already")
    }

    @Test func keepaliveAndAWaitingRelayTurnToThePunch() {
        var coordination = PunchCoordination()
        #expect(coordination.announce(startMillis: 500, state: .keepalive, pinned: false, hasRelay: true, wall: 0, now: 0)
                == .fire(.endpointChanged, after: .milliseconds(500)))
        #expect(coordination.announce(startMillis: 500, state: .relaying, pinned: false, hasRelay: false, wall: 0, now: 0)
                == .fire(.relayTimeout, after: .milliseconds(500)))
        #expect(coordination.announce(startMillis: 500, state: .relaying, pinned: false, hasRelay: true, wall: 0, now: 0)
                == PunchCoordination.Joining.none, "the granted relay is given its time")
    }

    @Test func aSessionOfOurOwnMakingIsAlwaysReplaced() {
        var coordination = PunchCoordination()
        #expect(coordination.isReplaced(byPunchAt: 1_795_684_856_311), "no session yet")
        coordination.begin(session: 84_444_080_236_833_133, coordinated: false)  // random, larger than any start time
        #expect(coordination.isReplaced(byPunchAt: 1_795_684_856_311))
    }

    @Test func anAnnouncedSessionIsReplacedOnlyByALaterPunch() {
        var coordination = PunchCoordination()
        coordination.begin(session: 1_795_684_853_310, coordinated: true)
        #expect(!coordination.isReplaced(byPunchAt: 1_795_684_853_310), "the same punch announced again")
        #expect(!coordination.isReplaced(byPunchAt: 1_795_684_850_000), "an older punch arriving late")
        #expect(coordination.isReplaced(byPunchAt: 1_795_684_856_311), "a new punch the peer is in")
    }
}
