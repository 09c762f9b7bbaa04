import Foundation
import LabSupport
import Net
import Testing

/// Members whose homes have IPv6 beside a translated IPv4 — most home lines, many behind a
/// carrier-grade NAT — connect directly over IPv6 whatever their IPv4 NATs: symmetric ↔ symmetric,
/// which IPv4 alone leaves on the relay, included. The punch opens each home router's stateful
/// IPv6 filter as it opens a NAT.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentIPv6LabTests {
    @Test(arguments: [(SiteKind.single(.symmetric), SiteKind.single(.symmetric)), (.single(.portRestrictedCone), .single(.symmetric)),
                      (.doubleNAT, .single(.symmetric))])
    func dualStackMembersGoDirectOverIPv6(_ a: SiteKind, _ b: SiteKind) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try a.add(to: lab), try b.add(to: lab)]
        let addresses = [try lab.enableIPv6(on: sites[0]), try lab.enableIPv6(on: sites[1])]
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        let first = try party.startAgent(in: sites[0].client, index: 1)
        // The second joins once the first knows its NAT, as a member joining later does: the pair
        // decides on its NAT types (two members starting together punch before either knows them).
        #expect(first.waitForNATType(within: 15) == a.effective.rawValue)
        let started = Date()
        let agents = [first, try party.startAgent(in: sites[1].client, index: 2)]
        defer { party.keepLogs(of: agents, as: "ipv6-\(a)-\(b)".replacingOccurrences(of: " ", with: "-")) }
        for (index, agent) in agents.enumerated() {
            let other = agents[1 - index]
            // Within 8 s: a pair that plans without its IPv6 (symmetric ↔ symmetric: relay) finds
            // the IPv6 path only when the relayed path next tries to upgrade, about 13 s in.
            let peer = agent.waitForPeer(other.overlay, within: 8) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
            #expect(peer != nil, "\(a) ↔ \(b): agent \(agent.index) never went direct: \(agent.peer(other.overlay) ?? [:])\n\(party.log(of: agent).suffix(6000))")
            let endpoint = (peer?["endpoint"] as? String).flatMap { Endpoint($0) }
            #expect(endpoint == Endpoint(.v6(addresses[1 - index]), 51820), "agent \(agent.index): WireGuard points at \(String(describing: endpoint))")
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(agents[0].pingUntilAnswered(agents[1].overlay, within: 10) != nil, "\(a) ↔ \(b): no ping 1 → 2")
        #expect(agents[1].pingUntilAnswered(agents[0].overlay, within: 10) != nil, "\(a) ↔ \(b): no ping 2 → 1")
        print("AGENT-IPV6 \(a) ↔ \(b): direct over IPv6 after \(Int(elapsed * 1000)) ms")
    }

    /// A member on an IPv6-only line (no IPv4 address at all) finds the control server by name
    /// (its IPv6 address first: the name has both), registers and detects over IPv6, and reaches a
    /// dual-stack member directly over IPv6.
    @Test func anIPv6OnlyMemberJoinsAndPings() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.portRestrictedCone)]
        let addresses = [try lab.enableIPv6(on: sites[0]), try lab.enableIPv6(on: sites[1])]
        try lab.removeIPv4(from: sites[1])
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        let dualStack = try party.startAgent(in: sites[0].client, index: 1)
        _ = try AgentHostNameLabTests.NameServer(lab, hosts: "\(party.control.address) \(AgentHostNameLabTests.name)\n\(party.control6.address) \(AgentHostNameLabTests.name)\n", ipv6: true)
        try lab.useNameServer(.v6(Lab.hostIPv6(AgentHostNameLabTests.nameServer)), in: sites[1].client)
        let only6 = try party.startAgent(in: sites[1].client, index: 2, control: "\(AgentHostNameLabTests.name):\(party.control.port)")
        let agents = [dualStack, only6]
        defer { party.keepLogs(of: agents, as: "ipv6-only", control: true) }
        for (index, agent) in agents.enumerated() {
            let other = agents[1 - index]
            let peer = agent.waitForPeer(other.overlay, within: 20) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
            #expect(peer != nil, "agent \(agent.index) never went direct: \(agent.peer(other.overlay) ?? [:])\n\(party.log(of: agent).suffix(6000))")
            let endpoint = (peer?["endpoint"] as? String).flatMap { Endpoint($0) }
            #expect(endpoint == Endpoint(.v6(addresses[1 - index]), 51820), "agent \(agent.index): WireGuard points at \(String(describing: endpoint))")
        }
        #expect((only6.status()?["control"] as? [String: Any])?["address"] as? String == "\(party.control6)")
        #expect(dualStack.pingUntilAnswered(only6.overlay, within: 10) != nil, "no ping to the IPv6-only member")
        #expect(only6.pingUntilAnswered(dualStack.overlay, within: 10) != nil, "no ping from the IPv6-only member")
    }

    /// A member on an IPv6-only line and one on IPv4 only have no family in common: they meet
    /// through a relay that listens on both (each speaks to it in its own family), and ping.
    @Test func anIPv6OnlyMemberAndAnIPv4OnlyMemberMeetThroughARelay() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.portRestrictedCone)]
        try lab.enableIPv6(on: sites[1])
        try lab.removeIPv4(from: sites[1])
        let party = try PartyLab(lab)
        let relayAddress = IPv4Address(192, 0, 2, 20)
        let relayHost = try lab.addHost("relay", address: relayAddress, ipv6: true)
        try party.startRelay(in: relayHost, address: relayAddress, ipv6: Lab.hostIPv6(relayAddress))
        try party.startControl()
        let only4 = try party.startAgent(in: sites[0].client, index: 1)
        let only6 = try party.startAgent(in: sites[1].client, index: 2, control: "\(party.control6)")
        let agents = [only4, only6]
        defer { party.keepLogs(of: agents, as: "ipv6-only-ipv4-only", control: true) }
        let relays = ["192.0.2.20:4000", "[\(Lab.hostIPv6(relayAddress))]:4000"]
        for (index, agent) in agents.enumerated() {
            let other = agents[1 - index]
            let peer = agent.waitForPeer(other.overlay, within: 30) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "relayed" }
            #expect(peer != nil, "agent \(agent.index) is not relayed: \(agent.peer(other.overlay) ?? [:])\n\(party.log(of: agent).suffix(6000))")
            #expect(peer?["relay"] as? String == relays[index], "agent \(agent.index) speaks to the relay in its own family")
        }
        #expect(only4.pingUntilAnswered(only6.overlay, within: 10) != nil, "no ping to the IPv6-only member")
        #expect(only6.pingUntilAnswered(only4.overlay, within: 10) != nil, "no ping from the IPv6-only member")
    }
}
