import Foundation
import LabSupport
import Net
import Testing

/// The lab's extra topology: a double NAT, hosts added on the internet, a router that changes its
/// public address or forgets its connections.
@Suite(.enabled(if: Lab.isAvailable, "the NAT lab needs root (ip netns, nftables)")) struct LabTopologyTests {
    @Test func effectiveBehaviourIsTheStricterRouter() {
        #expect(NATBehaviour.portRestrictedCone.behind(.portRestrictedCone) == .portRestrictedCone)
        #expect(NATBehaviour.restrictedCone.behind(.fullCone) == .restrictedCone)
        #expect(NATBehaviour.fullCone.behind(.symmetric) == .symmetric)
    }

    @Test func doubleNATLooksPortRestrictedFromInside() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        try startSTUNServer(in: lab)
        let site = try lab.addSite(.portRestrictedCone, behind: .portRestrictedCone)  // the probe passes
        #expect(site.isDoubleNAT && site.innerRouter != nil)
        #expect(site.behaviour == .portRestrictedCone)
        try site.client.run("ping", "-c1", "-W1", "\(Lab.stunPrimary)")
        let result = try netcheck(in: site, ["--stun", "\(Lab.stunPrimary):3478"])
        #expect(result["nat_type"] as? String == NATBehaviour.portRestrictedCone.rawValue)
        let publicEndpoint = try #require(result["public_endpoint"] as? String)
        #expect(publicEndpoint.hasPrefix("\(site.publicAddress):"))
        #expect(try lab.addSite(.fullCone).isDoubleNAT == false)
    }

    @Test(arguments: [(NATBehaviour.fullCone, NATBehaviour.restrictedCone), (.symmetric, .fullCone)])
    func doubleNATShowsTheStricterRouter(_ inner: NATBehaviour, _ outer: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(inner, behind: outer)  // the probe checks the effective behaviour
        #expect(site.behaviour == inner.behind(outer))
    }

    @Test func addedHostIsReachable() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let relay = IPv4Address(192, 0, 2, 20)
        try lab.addHost("relay", address: relay)
        let site = try lab.addSite(.symmetric)
        try site.client.run("ping", "-c1", "-W1", "\(relay)")
        try lab.stunHost.run("ping", "-c1", "-W1", "\(relay)")
        try site.client.run("ping", "-c1", "-W1", "\(Lab.stunAlternate)")
    }

    @Test func changedPublicAddressIsTheNewSource() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.portRestrictedCone)
        let reflector = try lab.stunHost.udpSocket(binding: Endpoint(.v4(Lab.stunPrimary), 7010))
        let client = try site.client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        func source() throws -> Endpoint {
            try client.send(Array("where".utf8), to: reflector.local)
            return try #require(try NATProbe.receive(on: reflector, within: .seconds(2))).1
        }
        #expect(try source().address == .v4(site.publicAddress))
        let moved = try lab.changePublicAddress(of: site)
        let after = try source()
        #expect(after.address == .v4(moved))
        try reflector.send(Array("here".utf8), to: after)
        #expect(try NATProbe.receive(on: client, within: .seconds(2))?.0 == "here")
    }

    @Test func flushedConntrackForgetsTheMapping() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.restrictedCone)
        let reflector = try lab.stunHost.udpSocket(binding: Endpoint(.v4(Lab.stunPrimary), 7011))
        let client = try site.client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        try client.send(Array("hello".utf8), to: reflector.local)
        _ = try #require(try NATProbe.receive(on: reflector, within: .seconds(2)))
        let entries = { try site.router.run(["conntrack", "-L", "-p", "udp", "--dport", "7011"], allowFailure: true) }
        #expect(try entries().contains("dport=7011"))
        try lab.flushConntrack(of: site)
        #expect(try !entries().contains("dport=7011"))
    }
}
