import Foundation
import LabSupport
import Net
import Testing

/// The interface's MTU: `MTU =` as given, or — as wg-quick chooses — the MTU of the path toward
/// the control server less WireGuard's 80 bytes (a PPPoE-like 1492 uplink: 1412); a reload applies
/// a new one. Checked with `ip link` and `status --json`, and with pings that fill the MTU exactly
/// across the overlay (don't-fragment set) while one byte more is refused.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentMTULabTests {
    /// The MTU `ip link` shows for `interface` in `namespace`.
    static func linkMTU(_ namespace: Namespace, _ interface: String) -> Int? {
        guard let text = try? namespace.run(["ip", "-o", "link", "show", "dev", interface]),
              let range = text.range(of: " mtu ") else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }

    /// Whether a ping of `size` bytes of IP packet, don't-fragment, crosses to `overlay`.
    static func pingFits(_ agent: AgentHandle, _ overlay: IPv4Address, packet size: Int) -> Bool {
        let output = (try? agent.namespace.run(["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "\(size - 28)", "\(overlay)"],
                                               allowFailure: true)) ?? ""
        return output.contains(" 0% packet loss")
    }

    @Test func theMTUIsConfiguredOrFollowsTheUplink() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.fullCone), try lab.addSite(.fullCone)]
        // The first site's uplink is a PPPoE-like 1492.
        try sites[0].client.run(["ip", "link", "set", "dev", "eth0", "mtu", "1492"])
        let party = try PartyLab(lab)
        try party.startControl()
        let agents = [try party.startAgent(in: sites[0].client, index: 1),
                      try party.startAgent(in: sites[1].client, index: 2, interface: ["MTU = 1380"])]
        for (index, agent) in agents.enumerated() {
            let peer = agent.waitForPeer(agents[1 - index].overlay, within: 40) { $0["state"] as? String == "keepalive" }
            #expect(peer != nil, "agent \(agent.index): \(party.log(of: agent).suffix(3000))")
        }
        #expect(Self.linkMTU(agents[0].namespace, agents[0].interface) == 1412, "1492 less 80")
        #expect(Self.linkMTU(agents[1].namespace, agents[1].interface) == 1380, "as configured")
        #expect(agents[0].status()?["mtu"] as? Int == 1412)
        #expect(agents[1].status()?["mtu"] as? Int == 1380)
        // A packet of exactly the MTU crosses; one byte more does not leave (don't fragment).
        #expect(Self.pingFits(agents[1], agents[0].overlay, packet: 1380))
        #expect(!Self.pingFits(agents[1], agents[0].overlay, packet: 1381))
        #expect(Self.pingFits(agents[0], agents[1].overlay, packet: 1380))

        // A reload applies a new MTU at once.
        let original = try String(contentsOf: agents[1].configuration, encoding: .utf8)
        try original.replacingOccurrences(of: "MTU = 1380", with: "MTU = 1400").write(to: agents[1].configuration, atomically: true, encoding: .utf8)
        kill(agents[1].process!.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(10)
        while Self.linkMTU(agents[1].namespace, agents[1].interface) != 1400, Date() < deadline { usleep(50_000) }
        #expect(Self.linkMTU(agents[1].namespace, agents[1].interface) == 1400)
        #expect(agents[1].status()?["mtu"] as? Int == 1400)
        #expect(Self.pingFits(agents[1], agents[0].overlay, packet: 1400))
        party.keepLogs(of: agents, as: "mtu", control: true)
    }
}
