import Net
import Peer
import Rendezvous
import Testing

/// Which relay a connection asks for, keeps and gives back: the early relay's hand-over to
/// Relaying, who asks, the offers' order, and grants that come too late.
@Suite struct RelayUseTests {
    func offer(_ service: String) -> RelayOffer {
        RelayOffer(service: Endpoint(service)!, allocations: 0, capacity: 100, token: [1, 2, 3], replyKey: [UInt8](repeating: 7, count: 32))
    }

    func grant(_ service: String) -> RelayGrant {
        RelayGrant(offer: offer(service), endpoint: Endpoint(Endpoint(service)!.address, 40001))
    }

    @Test func onlyTheSmallerKeyAsksForTheEarlyRelayAndNotWhilePaused() {
        var use = RelayUse()
        #expect(use.allocate(in: .detecting, enabled: true, localKeyIsSmaller: true, earlyPaused: false) == .request)
        #expect(use.allocate(in: .detecting, enabled: true, localKeyIsSmaller: false, earlyPaused: false) == RelayUse.Allocation.none)
        #expect(use.allocate(in: .detecting, enabled: true, localKeyIsSmaller: true, earlyPaused: true) == RelayUse.Allocation.none)
        #expect(use.allocate(in: .relaying, enabled: true, localKeyIsSmaller: false, earlyPaused: true) == .request,
                "in Relaying both ask: one may have lost the other's request")
        #expect(use.allocate(in: .relaying, enabled: false, localKeyIsSmaller: true, earlyPaused: false) == RelayUse.Allocation.none)
    }

    @Test func theEarlyRelayCarriesOnIntoRelayingOnce() {
        var use = RelayUse()
        #expect(use.offered([offer("203.0.113.5:3479")], preferred: [], in: .punching) == .allocate(offer("203.0.113.5:3479")))
        let early = use.granted(grant("203.0.113.5:3479"), in: .punching)
        #expect(early == .ready && use.early)
        #expect(use.allocate(in: .relaying, enabled: true, localKeyIsSmaller: true, earlyPaused: false) == .reuse)
        #expect(use.grant == grant("203.0.113.5:3479") && !use.early)
        // Relaying entered again (a failed upgrade): the grant held is not early any more, a new one is asked for.
        #expect(use.allocate(in: .relaying, enabled: true, localKeyIsSmaller: true, earlyPaused: false) == .request)
        #expect(use.grant == nil)
    }

    @Test func preferredRelaysGoFirstThenTheServersOrder() {
        var use = RelayUse()
        let offers = ["203.0.113.1:3479", "203.0.113.2:3479", "203.0.113.3:3479"].map(offer)
        #expect(use.offered(offers, preferred: [Endpoint("203.0.113.3:3479")!, Endpoint("192.0.2.99:3479")!], in: .relaying)
                == .allocate(offers[2]))
        #expect(use.next() == .allocate(offers[0]))
        #expect(use.next() == .allocate(offers[1]))
        #expect(use.next() == .failed)
    }

    @Test func offersAndGrantsOutsideTheRelayStatesAreIgnored() {
        var use = RelayUse()
        #expect(use.offered([offer("203.0.113.1:3479")], preferred: [], in: .keepalive) == .ignore, "direct: no relay held")
        let late = use.granted(grant("203.0.113.1:3479"), in: .direct)
        #expect(late == .unwanted && use.grant == nil)
        let held = use.granted(grant("203.0.113.1:3479"), in: .relaying)
        #expect(held == .ready)
        #expect(use.offered([], preferred: [], in: .relaying) == .ignore, "a relay held, and no offer")
        let released = use.release()
        #expect(released == grant("203.0.113.1:3479") && use.grant == nil)
        #expect(use.release() == nil)
    }

    /// With a relay held, offers mean the peer asks anew: this side asks too. The allocation it
    /// holds comes back (a newer token, kept); another endpoint (the relay restarted) is used at
    /// once while punching, and taken over by Relaying from Keepalive, as the early relay is.
    @Test func aSideHoldingARelayFollowsThePairsAllocation() {
        var use = RelayUse()
        #expect(use.granted(grant("203.0.113.1:3479"), in: .relaying) == .ready)
        #expect(use.granted(grant("203.0.113.1:3479"), in: .relaying) == .kept, "both members' offers tried: the same allocation again")
        #expect(use.offered([offer("203.0.113.1:3479")], preferred: [], in: .keepalive) == .allocate(offer("203.0.113.1:3479")))
        var refreshed = grant("203.0.113.1:3479")
        refreshed.offer.token = [4, 5, 6]
        #expect(use.granted(refreshed, in: .keepalive) == .kept)
        #expect(use.grant == refreshed && !use.early, "the newer token is the one a release presents")
        #expect(use.offered([], preferred: [], in: .keepalive) == .ignore)

        #expect(use.offered([offer("203.0.113.1:3479")], preferred: [], in: .keepalive) == .allocate(offer("203.0.113.1:3479")))
        let moved = RelayGrant(offer: offer("203.0.113.1:3479"), endpoint: Endpoint("203.0.113.1:40003")!)
        #expect(use.granted(moved, in: .keepalive) == .ready)
        #expect(use.allocate(in: .relaying, enabled: true, localKeyIsSmaller: false, earlyPaused: false) == .reuse)
        #expect(use.grant == moved)

        // Punching on the dead relay (an upgrade attempt) when the peer asks anew: the new one at once.
        #expect(use.offered([offer("203.0.113.1:3479")], preferred: [], in: .punching) == .allocate(offer("203.0.113.1:3479")))
        let again = RelayGrant(offer: offer("203.0.113.1:3479"), endpoint: Endpoint("203.0.113.1:40005")!)
        #expect(use.granted(again, in: .punching) == .ready && use.grant == again)
    }
}
