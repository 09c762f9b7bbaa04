import EventLoop
import Punch
import Rendezvous
import Testing
import WireGuard
@testable import Agent

/// Which punch announcements replace the session a peer link punches in.
struct PeerLinkTests {
    static func link() throws -> PeerLink {
        let local = Key.generatePrivate(), remote = Key.generatePrivate().publicKey
        let pairKey = try #require(PairKey(localPrivateKey: local.bytes, localPublicKey: local.publicKey.bytes, remotePublicKey: remote.bytes))
        let record = MemberRecord(key: try #require(MemberKey(remote.bytes)), nat: .symmetric, candidates: [])
        return PeerLink(record: record, pairKey: pairKey, machine: MachineID(0), now: 0)
    }

    @Test func aSessionOfOurOwnMakingIsAlwaysReplaced() throws {
        var link = try Self.link()
        #expect(link.isReplaced(byPunchAt: 1_795_684_856_311), "no session yet")
        link.session = 84_444_080_236_833_133  // random, larger than any start time
        link.sessionCoordinated = false
        #expect(link.isReplaced(byPunchAt: 1_795_684_856_311))
    }

    @Test func anAnnouncedSessionIsReplacedOnlyByALaterPunch() throws {
        var link = try Self.link()
        link.session = 1_795_684_853_310
        link.sessionCoordinated = true
        #expect(!link.isReplaced(byPunchAt: 1_795_684_853_310), "the same punch announced again")
        #expect(!link.isReplaced(byPunchAt: 1_795_684_850_000), "an older punch arriving late")
        #expect(link.isReplaced(byPunchAt: 1_795_684_856_311), "a new punch the peer is in")
    }
}
