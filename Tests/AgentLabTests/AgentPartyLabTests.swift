import Foundation
import LabSupport
import Net
import Testing

/// Four agents in one party (full cone, port-restricted, two symmetric): every agent reaches every
/// other, each pair on the path its NATs allow — direct (port-restricted ↔ symmetric through a fan
/// port or the spray, whichever pins first), relayed — and `lanrage status` and `lanrage ping` show it.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentPartyLabTests {
    @Test func fourAgentsReachEachOther() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let behaviours: [NATBehaviour] = [.fullCone, .portRestrictedCone, .symmetric, .symmetric]
        let sites = try behaviours.map { try lab.addSite($0) }
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        let agents = try sites.indices.map { try party.startAgent(in: sites[$0].client, index: $0 + 1) }
        for (i, agent) in agents.enumerated() {
            for (j, other) in agents.enumerated() where i != j {
                let path = AgentMatrixLabTests.expectsDirect(behaviours[i], behaviours[j]) ? "direct" : "relayed"
                let peer = agent.waitForPeer(other.overlay, within: 40) { $0["state"] as? String == "keepalive" && $0["path"] as? String == path }
                #expect(peer != nil, "\(behaviours[i]) → \(behaviours[j]): \(agent.peer(other.overlay) ?? [:])\n\(party.log(of: agent).suffix(4000))")
                #expect(agent.ping(other.overlay), "\(behaviours[i]) → \(behaviours[j]): no ping")
            }
            #expect((agent.status()?["peers"] as? [Any])?.count == agents.count - 1)
        }

        // `lanrage ping` names the path; `lanrage status` shows the agent's NAT and its peers.
        let direct = try agents[0].namespace.run([Products.lanrage, "ping", "\(agents[1].overlay)", "--count", "2",
                                                  "--socket", agents[0].statusSocket])
        #expect(direct.contains("direct to 198.51.100.") && direct.contains("2 received"), "\(direct)")
        let relayed = try agents[3].namespace.run([Products.lanrage, "ping", "\(agents[2].overlay)", "--count", "1",
                                                   "--socket", agents[3].statusSocket])
        #expect(relayed.contains("relayed via 192.0.2.20:4000") && relayed.contains("1 received"), "\(relayed)")
        // Symmetric → port-restricted: direct through a fan port, shown with the peer's public endpoint.
        let fanned = try agents[2].namespace.run([Products.lanrage, "ping", "\(agents[1].overlay)", "--count", "1",
                                                  "--socket", agents[2].statusSocket])
        #expect(fanned.contains("direct to 198.51.100.") && fanned.contains(":51820") && fanned.contains("1 received"), "\(fanned)")
        let status = try LabSupport.run([Products.lanrage, "status", "--socket", agents[2].statusSocket])
        #expect(status.contains("nat: symmetric, public endpoint 198.51.100.") && status.contains("state: keepalive"), "\(status)")
        // Either side's guessing may win: the symmetric side's fan (a fan port pinned), or the
        // port-restricted side's spray reaching the symmetric side's own port. Status names the fan port when used.
        let toPortRestricted = agents[2].peer(agents[1].overlay)
        #expect(toPortRestricted?["path"] as? String == "direct", "\(toPortRestricted ?? [:])")
        if let fanPort = toPortRestricted?["fan_port"] as? Int {
            #expect(status.contains("path: direct from fan port \(fanPort)"), "\(status)")
        }
        print("AGENT-PARTY symmetric → port-restricted: direct \(toPortRestricted?["fan_port"] is Int ? "through a fan port" : "from the WireGuard port (the spray won)")")
        #expect {
            try LabSupport.run([Products.lanrage, "ping", "100.64.0.99", "--socket", agents[0].statusSocket])
        } throws: { ($0 as? CommandFailure)?.output.contains("no peer matches '100.64.0.99'") == true }
    }
}
