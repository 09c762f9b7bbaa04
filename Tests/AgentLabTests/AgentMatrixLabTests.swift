import Foundation
import LabSupport
import Net
import Testing

/// A lab site's NAT: one of the five behaviours, or a double NAT (a port-restricted home router
/// behind a port-restricted carrier NAT).
enum SiteKind: Sendable, CustomStringConvertible {
    case single(NATBehaviour)
    case doubleNAT

    static let all: [SiteKind] = NATBehaviour.allCases.map { .single($0) } + [.doubleNAT]

    var description: String {
        switch self {
        case .single(let behaviour): "\(behaviour)"
        case .doubleNAT: "double NAT"
        }
    }

    /// The behaviour the site shows from outside.
    var effective: NATBehaviour {
        switch self {
        case .single(let behaviour): behaviour
        case .doubleNAT: .portRestrictedCone
        }
    }

    func add(to lab: Lab) throws -> Site {
        switch self {
        case .single(let behaviour): try lab.addSite(behaviour)
        case .doubleNAT: try lab.addSite(.portRestrictedCone, behind: .portRestrictedCone)
        }
    }
}

/// Two agents for every pair of NAT types (open, full cone, restricted, port-restricted, symmetric,
/// double NAT), with the control server and a relay on their own hosts: both reach Keepalive on the
/// direct path wherever the punch issue's table says a punch works, through the relay elsewhere,
/// and a ping crosses the overlay both ways.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentMatrixLabTests {
    static let cells: [(SiteKind, SiteKind)] = SiteKind.all.indices.flatMap { i in SiteKind.all[i...].map { (SiteKind.all[i], $0) } }

    /// Relay only when both map per destination. A port-restricted side facing a symmetric one (the
    /// lab's allocates random ports) goes direct through the symmetric side's fan ports.
    static func expectsDirect(_ a: NATBehaviour, _ b: NATBehaviour) -> Bool {
        !(a == .symmetric && b == .symmetric)
    }

    @Test(arguments: cells)
    func pingCrossesTheOverlay(_ a: SiteKind, _ b: SiteKind) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try a.add(to: lab), try b.add(to: lab)]
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        let started = Date()
        let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
        let path = Self.expectsDirect(a.effective, b.effective) ? "direct" : "relayed"
        for (index, agent) in agents.enumerated() {
            let other = agents[1 - index]
            let peer = agent.waitForPeer(other.overlay, within: 40) { $0["state"] as? String == "keepalive" && $0["path"] as? String == path }
            #expect(peer != nil, "\(a) ↔ \(b): agent \(agent.index) never reached keepalive on the \(path) path: \(agent.peer(other.overlay) ?? [:])\n\(party.log(of: agent).suffix(6000))")
            if path == "relayed" { #expect(peer?["relay"] as? String == "192.0.2.20:4000") }
            // Only the symmetric side of a port-restricted pair can be carried by a fan port.
            let fanned = (index == 0 ? a : b).effective == .symmetric && (index == 0 ? b : a).effective == .portRestrictedCone
            if !fanned { #expect(peer?["fan_port"] is NSNull || peer?["fan_port"] == nil, "\(a) ↔ \(b): a fan port where none is needed") }
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(agents[0].ping(agents[1].overlay), "\(a) ↔ \(b): no ping 1 → 2")
        #expect(agents[1].ping(agents[0].overlay), "\(a) ↔ \(b): no ping 2 → 1")
        party.keepLogs(of: agents, as: "matrix-\(a)-\(b)")
        print("AGENT-MATRIX \(a) ↔ \(b): \(path) after \(Int(elapsed * 1000)) ms")
    }
}
