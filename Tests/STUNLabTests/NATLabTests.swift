import Foundation
import LabSupport
import Net
import Testing

/// The lab itself: every NAT behaviour passes its probe (`addSite` verifies before returning),
/// and the probe does fail when a router behaves otherwise than its label says.
@Suite(.enabled(if: Lab.isAvailable, "the NAT lab needs root (ip netns, nftables)")) struct NATLabProbeTests {
    @Test(arguments: NATBehaviour.allCases)
    func eachBehaviourPassesItsProbe(_ behaviour: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        try lab.addSite(behaviour)
    }

    @Test func probeCatchesARouterThatFiltersLessThanItsLabel() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.portRestrictedCone, verify: false)
        try site.router.run(["nft", "flush", "ruleset"])
        try site.router.run(["nft", "-f", "-"], input: NATBehaviour.fullCone.ruleset)
        #expect(throws: NATProbe.Mismatch.self) { try NATProbe.verify(site, in: lab) }
    }

    @Test func probeCatchesARouterThatKeepsUnsolicitedInbound() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.portRestrictedCone, verify: false)
        let withoutDrop = NATBehaviour.portRestrictedCone.ruleset.replacingOccurrences(of: "iifname \"wan\" ct state new drop", with: "")
        try site.router.run(["nft", "flush", "ruleset"])
        try site.router.run(["nft", "-f", "-"], input: withoutDrop)
        #expect(throws: NATProbe.Mismatch.self) { try NATProbe.verify(site, in: lab) }
    }
}
