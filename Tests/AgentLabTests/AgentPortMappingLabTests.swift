import Foundation
import LabSupport
import Net
import Testing

/// Two members behind symmetric NATs — a pair IPv4 punching alone leaves on the relay — go direct
/// when one side's router maps the WireGuard port (miniupnpd), by PCP, NAT-PMP or UPnP-IGD, each on
/// its own: PCP and NAT-PMP chosen with `PortMapping =` from a router that speaks both; UPnP-IGD
/// found by the default order on a router that speaks only it (PCP and NAT-PMP refused on the way).
/// Both agents start together: the mapping may come while the pair already punches (miniupnpd
/// delays its SSDP answers by up to a second), and the punch goes to it then. The agent gives the
/// mapping back when it exits.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentPortMappingLabTests {
    @Test(arguments: ["pcp", "natpmp", "upnp"])
    func aMappedPortTakesSymmetricToSymmetricDirect(_ protocolName: String) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.symmetric)]
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        let upnp = protocolName == "upnp"
        try lab.runMiniUPnPd(on: sites[0], natPMP: !upnp, upnp: upnp)
        let mapped = try party.prepareAgent(in: sites[0].client, index: 1, agent: upnp ? [] : ["PortMapping = \(protocolName)"])
        let other = try party.prepareAgent(in: sites[1].client, index: 2, agent: ["PortMapping = off"])
        let agents = [mapped, other]
        let starting = Date()
        for agent in agents { try party.launch(agent) }
        defer { party.keepLogs(of: agents, as: "port-mapping-\(protocolName)", control: true) }
        let mapping = mapped.waitForStatus(within: 15) { (($0["port_mapping"] as? [String: Any])?["usable"] as? Bool) == true }
        if upnp {
            // Without ICMP's refusals PCP and NAT-PMP would each wait out four tries (3.75 s).
            #expect(Date().timeIntervalSince(starting) < 5, "PCP and NAT-PMP given up at the gateway's ICMP errors")
        }
        let expected = ["pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP-IGD"][protocolName] ?? protocolName
        #expect((mapping?["port_mapping"] as? [String: Any])?["protocol"] as? String == expected,
                "\(String(describing: mapped.status()?["port_mapping"]))\n\(party.log(of: mapped).suffix(3000))")
        #expect(try lab.miniUPnPdMappings(on: sites[0]).contains { $0.contains("51820") })
        // Within the first attempts (1.3–1.8 s measured): a punch that missed a mapping which came
        // during it would wait for the next upgrade round (17 s).
        for (index, agent) in agents.enumerated() {
            let peer = agent.waitForPeer(agents[1 - index].overlay, within: 8) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
            #expect(peer != nil, "agent \(agent.index): \(agent.peer(agents[1 - index].overlay) ?? [:])\n\(party.log(of: agent).suffix(4000))")
        }
        print("AGENT-PORTMAP \(expected): symmetric ↔ symmetric direct after \(Int(Date().timeIntervalSince(starting) * 1000)) ms")
        #expect(other.pingUntilAnswered(mapped.overlay, within: 10) != nil)

        #expect(mapped.stop())
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, try lab.miniUPnPdMappings(on: sites[0]).contains(where: { $0.contains("51820") }) { usleep(50_000) }
        #expect(try lab.miniUPnPdMappings(on: sites[0]).allSatisfy { !$0.contains("51820") }, "the mapping is given back at exit")
    }

    /// `lanrage netcheck` reports what the gateway offers — by NAT-PMP or PCP, or by UPnP-IGD alone —
    /// and gives the mapping back; a gateway that maps nothing is named as such.
    @Test func netcheckReportsTheGatewaysMapping() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.portRestrictedCone), try lab.addSite(.symmetric)]
        let party = try PartyLab(lab)
        try party.startControl()
        try lab.runMiniUPnPd(on: sites[0])
        try lab.runMiniUPnPd(on: sites[2], natPMP: false, upnp: true)
        for (index, site) in sites.enumerated() {
            let output = try site.client.run([Products.lanrage, "netcheck", "--stun", "\(party.control)", "--port", "51820", "--json"])
            let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            let mapping = report?["port_mapping"] as? [String: Any]
            #expect(mapping?["gateway"] as? String == "203.0.113.\(4 * (index + 1) + 1)", "\(output)")
            if index != 1 {
                #expect(mapping?["protocol"] is String && (mapping?["external"] as? String)?.hasPrefix("\(site.publicAddress):") == true, "\(output)")
                if index == 2 { #expect(mapping?["protocol"] as? String == "UPnP-IGD", "\(output)") }
                let deadline = Date().addingTimeInterval(2)
                while Date() < deadline, try !lab.miniUPnPdMappings(on: site).isEmpty { usleep(50_000) }
                #expect(try lab.miniUPnPdMappings(on: site).isEmpty, "netcheck gave the mapping back")
            } else {
                #expect(mapping?["protocol"] is NSNull && mapping?["external"] is NSNull, "\(output)")
            }
        }
    }
}
