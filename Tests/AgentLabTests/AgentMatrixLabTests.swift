import Foundation
import LabSupport
import Net
import Testing

/// Two agents for every pair of NAT types, with the control server and a relay on their own hosts:
/// a ping crosses the overlay in every cell, on the direct path wherever the compatibility table
/// says a punch works, through the relay elsewhere.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentMatrixLabTests {
    static let types: [NATBehaviour] = [.open, .fullCone, .restrictedCone, .portRestrictedCone, .symmetric]
    static let cells: [(NATBehaviour, NATBehaviour)] = types.indices.flatMap { i in types[i...].map { (types[i], $0) } }

    /// The path the punch issue's table promises: relay only when both map per destination, or when a
    /// port-restricted side faces a symmetric one (port prediction against the lab's random allocator fails).
    static func expectsDirect(_ a: NATBehaviour, _ b: NATBehaviour) -> Bool {
        switch (a, b) {
        case (.symmetric, .symmetric), (.portRestrictedCone, .symmetric), (.symmetric, .portRestrictedCone): false
        default: true
        }
    }

    @Test(arguments: cells)
    func pingCrossesTheOverlay(_ a: NATBehaviour, _ b: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(a), try lab.addSite(b)]
        let party = try PartyLab(lab)
        try party.startRelay(in: lab.stunHost, address: IPv4Address(192, 0, 2, 2))
        try party.startControl()
        let started = Date()
        let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
        let path = Self.expectsDirect(a, b) ? "direct" : "relayed"
        for (index, agent) in agents.enumerated() {
            let other = agents[1 - index]
            let peer = agent.waitForPeer(other.overlay, within: 40) { $0["state"] as? String == "keepalive" && $0["path"] as? String == path }
            #expect(peer != nil, "\(a) ↔ \(b): agent \(agent.index) never reached keepalive on the \(path) path: \(agent.peer(other.overlay) ?? [:])\n\(party.log(of: agent).suffix(6000))")
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(agents[0].ping(agents[1].overlay), "\(a) ↔ \(b): no ping 1 → 2")
        #expect(agents[1].ping(agents[0].overlay), "\(a) ↔ \(b): no ping 2 → 1")
        for agent in agents { try? party.log(of: agent).write(toFile: "/tmp/agent\(agent.index)-\(a)-\(b).log", atomically: true, encoding: .utf8) }
        print("AGENT-MATRIX \(a) ↔ \(b): \(path) after \(Int(elapsed * 1000)) ms")
    }
}
