import Foundation
import LabSupport
import Net
import Testing

/// Two members in one house, behind one NAT router, and a third elsewhere: the two connect
/// directly — over their LAN addresses (host candidates) when the router does not hairpin, over
/// either those or the public address when it does; behind a symmetric NAT too, which two members
/// at different sites could only cross through a relay — each connects to the third through the
/// NATs, and all three ping each other.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentSameSiteLabTests {
    @Test(arguments: [(NATBehaviour.portRestrictedCone, false), (.portRestrictedCone, true), (.symmetric, false)])
    func membersBehindOneNATConnectOverTheirLANAndMeshWithAThird(nat: NATBehaviour, hairpin: Bool) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let home = try lab.addSite(nat)
        let neighbour = try lab.addClient(to: home)
        if hairpin { try lab.enableHairpin(on: home) }
        let elsewhere = try lab.addSite(.fullCone)
        let party = try PartyLab(lab)
        try party.startControl()
        let first = try party.startAgent(in: home.client, index: 1)
        let third = try party.startAgent(in: elsewhere.client, index: 3)
        // The second joins once the first knows its NAT: it learns the first's type with its record,
        // as a member joining later does (two members starting together often decide before either knows).
        #expect(first.waitForNATType(within: 15) == nat.rawValue)
        let second = try party.startAgent(in: neighbour.namespace, index: 2)
        defer { party.keepLogs(of: [first, second, third], as: "same-site-\(nat.rawValue.replacingOccurrences(of: " ", with: "-"))\(hairpin ? "-hairpin" : "")", control: true) }

        // The pair in the house: direct; without hairpin, WireGuard's endpoint is the other's LAN address.
        // Both decide on direct themselves: within 12 s, before a relayed path's 15 s confirmation
        // could run out and punch after all (what happens when the late joiner takes the relay).
        let housemate = first.waitForPeer(second.overlay, within: 12) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
        #expect(housemate != nil, "\(String(describing: first.peer(second.overlay)))")
        let back = second.waitForPeer(first.overlay, within: 12) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
        #expect(back != nil, "\(String(describing: second.peer(first.overlay)))")
        let endpoints = [housemate, back].map { ($0?["endpoint"] as? String).flatMap { Endpoint($0) } }
        let lan = [Endpoint(.v4(neighbour.address), 51820), Endpoint(.v4(home.clientAddress), 51820)]
        if hairpin {
            #expect(zip(endpoints, lan).allSatisfy { $0 == $1 || $0?.address == .v4(home.publicAddress) }, "\(endpoints)")
        } else {
            #expect(endpoints == lan, "over the LAN, the public address does not loop back: \(endpoints)")
        }

        // Each to the third, and pings all round.
        for (agent, other) in [(first, third), (second, third), (third, first), (third, second)] {
            #expect(agent.waitForPeer(other.overlay, within: 30) { $0["state"] as? String == "keepalive" } != nil,
                    "agent \(agent.index) → \(other.index): \(String(describing: agent.peer(other.overlay)))")
        }
        for (agent, other) in [(first, second), (second, first), (first, third), (third, first), (second, third), (third, second)] {
            #expect(agent.pingUntilAnswered(other.overlay, within: 10) != nil, "agent \(agent.index) pings \(other.index)")
        }
    }
}
