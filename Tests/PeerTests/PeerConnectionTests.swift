import Net
import Peer
import Rendezvous
import STUN
import Testing

/// The connection's decisions that depend on its chart state: how WireGuard is read and its
/// answer used, what a changed record or a newly learned NAT does, and when a peer counts as down.
@Suite struct PeerConnectionTests {
    static let key = MemberKey([UInt8](repeating: 9, count: 32))!

    func record(_ nat: NATType, _ candidates: [Candidate]) -> MemberRecord {
        MemberRecord(key: Self.key, nat: nat, candidates: candidates)
    }

    let local = Candidate(.local, Endpoint("192.0.2.10:51820")!)
    let reflexive = Candidate(.reflexive, Endpoint("198.51.100.20:40000")!)
    let moved = Candidate(.reflexive, Endpoint("198.51.100.20:40001")!)

    @Test func readingWireGuardDependsOnTheState() {
        let direct = PeerConnection.readPlan(in: .direct, path: .none)
        #expect(direct.maxAge == .milliseconds(200) && direct.keepsDirect && direct.asksHandshake && !direct.working)
        let working = PeerConnection.readPlan(in: .keepalive, path: .direct)
        #expect(working.maxAge == .seconds(2) && working.keepsDirect && working.working && !working.asksHandshake)
        let relayed = PeerConnection.readPlan(in: .keepalive, path: .relayed)
        #expect(!relayed.keepsDirect, "a relayed tunnel is where WireGuard should be")
        #expect(!PeerConnection.readPlan(in: .relaying, path: .none).keepsDirect)
    }

    @Test func aChangedRecordMattersByState() {
        let old = record(.portRestrictedCone, [local, reflexive])
        #expect(PeerConnection.recordChanged(from: record(.unknown, []), to: old, in: .discovering) == .fire(.candidatesKnown))
        #expect(PeerConnection.recordChanged(from: record(.unknown, [local, reflexive]), to: old, in: .detecting) == .decide)
        #expect(PeerConnection.recordChanged(from: old, to: old, in: .detecting) == PeerConnection.Reaction.none)
        #expect(PeerConnection.recordChanged(from: record(.unknown, [local, reflexive]), to: old, in: .punching) == .punchAgain,
                "the NAT type came during the attempt: port prediction may apply")
        let mapped = Candidate(.reflexive, Endpoint("198.51.100.7:51820")!)
        #expect(PeerConnection.recordChanged(from: old, to: record(.portRestrictedCone, [local, reflexive, mapped]), in: .punching) == .punchCandidates,
                "a candidate came during the attempt (a port the peer's gateway mapped): punched too")
        #expect(PeerConnection.recordChanged(from: old, to: record(.portRestrictedCone, [local, moved]), in: .keepalive)
                == .fire(.endpointChanged))
        #expect(PeerConnection.recordChanged(from: old, to: record(.portRestrictedCone, [Candidate(.local, Endpoint("192.0.2.11:51820")!), reflexive]),
                                             in: .keepalive) == PeerConnection.Reaction.none, "a new LAN address is no new path")
        let symmetric = record(.symmetric, [local, reflexive])
        #expect(PeerConnection.recordChanged(from: symmetric, to: record(.symmetric, [local, moved]), in: .keepalive)
                == PeerConnection.Reaction.none, "a symmetric NAT's new mapping toward the STUN server is no new path")
        let elsewhere = Candidate(.reflexive, Endpoint("203.0.113.44:40001")!)
        #expect(PeerConnection.recordChanged(from: symmetric, to: record(.symmetric, [local, elsewhere]), in: .keepalive)
                == .fire(.endpointChanged), "a new public address is")
        let observed = Candidate(.observed, Endpoint("198.51.100.20:51820")!)
        #expect(PeerConnection.recordChanged(from: record(.unknown, [local, observed]), to: record(.unknown, [local, reflexive, observed]),
                                             in: .keepalive) == PeerConnection.Reaction.none,
                "the first STUN answer of a member whose detection had failed adds an endpoint, it moves nothing")
    }

    @Test func aLearnedNATMattersWhileDetectingAndPunching() {
        #expect(PeerConnection.natLearned(in: .detecting) == .decide)
        #expect(PeerConnection.natLearned(in: .punching) == .punchAgain)
        #expect(PeerConnection.natLearned(in: .keepalive) == PeerConnection.Reaction.none)
        #expect(PeerConnection.publicEndpointLearned(in: .detecting) == .decide)
        #expect(PeerConnection.publicEndpointLearned(in: .punching) == PeerConnection.Reaction.none)
    }

    @Test func onlyTheRoundsFirstAttemptStartsASession() {
        var connection = PeerConnection()
        let first = connection.attempt(1, bothReachable: false, now: 0, fresh: 5)
        #expect(first.start?.session == 5 && first.start?.requestPunch == true && !first.guessAgain)
        let second = connection.attempt(2, bothReachable: false, now: 0, fresh: 6)
        #expect(second.start == nil && second.guessAgain && connection.coordination.session == 5)
    }

    @Test func detectingDecidesOnlyInDetecting() {
        var connection = PeerConnection()
        let facts = PunchCoordination.Facts(localNAT: .symmetric, detecting: false, reflexiveKnown: true, peerNAT: .symmetric,
                                            peerReflexiveKnown: true, localKeyIsSmaller: true)
        #expect(connection.detect(facts, in: .punching, now: 0) == .wait)
        #expect(connection.detect(facts, in: .detecting, now: 0) == .relay)
    }

    @Test func aPeerIsDownWithoutAWorkingTunnel() {
        #expect(!PeerConnection.isDown(in: .keepalive, path: .direct, handshakeAge: 500), "Keepalive watches its own path")
        #expect(PeerConnection.isDown(in: .punching, path: .none, handshakeAge: 10))
        #expect(!PeerConnection.isDown(in: .punching, path: .relayed, handshakeAge: 30), "an upgrade over a relay that carries")
        #expect(PeerConnection.isDown(in: .punching, path: .relayed, handshakeAge: 181))
        #expect(PeerConnection.isDown(in: .relaying, path: .relayed, handshakeAge: nil))
    }

    @Test func detectingsDecisionSetsTheContextAndSaysWhenNATKnownFires() {
        var context = PeerContext()
        #expect(context.decided(.wait) == nil && context.directPossible == nil)
        #expect(context.decided(.awaitAnnouncement) == nil && context.directPossible == true)
        #expect(context.decided(.requestPunch) == nil)
        #expect(context.decided(.punchAfter(.milliseconds(400))) == .after(.milliseconds(400)) && !context.bothReachable)
        #expect(context.decided(.punchNow) == .now && context.bothReachable)
        #expect(context.decided(.relay) == .now && context.directPossible == false)
    }
}

