import Foundation
import LabSupport
import Net
import Testing

/// Two members behind symmetric NATs — a pair IPv4 punching alone leaves on the relay — go direct
/// when one side's router maps the WireGuard port (miniupnpd), asked by PCP or by NAT-PMP, each on
/// its own (`PortMapping =`); the agent gives the mapping back when it exits.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentPortMappingLabTests {
    @Test(arguments: ["pcp", "natpmp"])
    func aMappedPortTakesSymmetricToSymmetricDirect(_ protocolName: String) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.symmetric)]
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        try lab.runMiniUPnPd(on: sites[0])
        let mapped = try party.startAgent(in: sites[0].client, index: 1, agent: ["PortMapping = \(protocolName)"])
        let mapping = mapped.waitForStatus(within: 15) { (($0["port_mapping"] as? [String: Any])?["usable"] as? Bool) == true }
        let expected = protocolName == "pcp" ? "PCP" : "NAT-PMP"
        #expect((mapping?["port_mapping"] as? [String: Any])?["protocol"] as? String == expected,
                "\(String(describing: mapped.status()?["port_mapping"]))\n\(party.log(of: mapped).suffix(3000))")
        #expect(try lab.miniUPnPdMappings(on: sites[0]).contains { $0.contains("51820") })
        let started = Date()
        let other = try party.startAgent(in: sites[1].client, index: 2, agent: ["PortMapping = off"])
        let agents = [mapped, other]
        defer { party.keepLogs(of: agents, as: "port-mapping-\(protocolName)", control: true) }
        for (index, agent) in agents.enumerated() {
            let peer = agent.waitForPeer(agents[1 - index].overlay, within: 20) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
            #expect(peer != nil, "agent \(agent.index): \(agent.peer(agents[1 - index].overlay) ?? [:])\n\(party.log(of: agent).suffix(4000))")
        }
        print("AGENT-PORTMAP \(expected): symmetric ↔ symmetric direct after \(Int(Date().timeIntervalSince(started) * 1000)) ms")
        #expect(other.pingUntilAnswered(mapped.overlay, within: 10) != nil)

        #expect(mapped.stop())
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, try lab.miniUPnPdMappings(on: sites[0]).contains(where: { $0.contains("51820") }) { usleep(50_000) }
        #expect(try lab.miniUPnPdMappings(on: sites[0]).allSatisfy { !$0.contains("51820") }, "the mapping is given back at exit")
    }

    /// `lanrage netcheck` reports what the gateway offers, and gives the mapping back; a gateway
    /// that maps nothing is named as such.
    @Test func netcheckReportsTheGatewaysMapping() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.portRestrictedCone)]
        let party = try PartyLab(lab)
        try party.startControl()
        try lab.runMiniUPnPd(on: sites[0])
        for (index, site) in sites.enumerated() {
            let output = try site.client.run([Products.lanrage, "netcheck", "--stun", "\(party.control)", "--port", "51820", "--json"])
            let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            let mapping = report?["port_mapping"] as? [String: Any]
            #expect(mapping?["gateway"] as? String == "203.0.113.\(4 * (index + 1) + 1)", "\(output)")
            if index == 0 {
                #expect(mapping?["protocol"] is String && (mapping?["external"] as? String)?.hasPrefix("\(site.publicAddress):") == true, "\(output)")
                let deadline = Date().addingTimeInterval(2)
                while Date() < deadline, try !lab.miniUPnPdMappings(on: site).isEmpty { usleep(50_000) }
                #expect(try lab.miniUPnPdMappings(on: site).isEmpty, "netcheck gave the mapping back")
            } else {
                #expect(mapping?["protocol"] is NSNull && mapping?["external"] is NSNull, "\(output)")
            }
        }
    }
}
