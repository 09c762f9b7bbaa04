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
        #expect(early && use.early)
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
        #expect(use.offered([offer("203.0.113.1:3479")], preferred: [], in: .keepalive) == .ignore)
        let late = use.granted(grant("203.0.113.1:3479"), in: .keepalive)
        #expect(!late && use.grant == nil)
        let held = use.granted(grant("203.0.113.1:3479"), in: .relaying)
        #expect(held)
        #expect(use.offered([offer("203.0.113.2:3479")], preferred: [], in: .relaying) == .ignore, "a relay is held already")
        #expect(use.offered([], preferred: [], in: .detecting) == .ignore)
        let released = use.release()
        #expect(released == grant("203.0.113.1:3479") && use.grant == nil)
        #expect(use.release() == nil)
    }
}
