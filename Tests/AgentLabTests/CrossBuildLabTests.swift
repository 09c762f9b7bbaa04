import Foundation
import LabSupport
import Net
import Testing

/// A cross build (`make cross`) in the NAT lab: with `LANRAGE_BIN` naming it (an ARM build runs
/// through a script that starts it under qemu-user), two agents of that architecture behind a
/// restricted-cone and a symmetric NAT, on wireguard-go, reach the direct path and ping across the
/// overlay; the control server and the relay are that build too. Run by `make cross-tests`.
@Suite(.enabled(if: Lab.isAvailable && ProcessInfo.processInfo.environment["LANRAGE_CROSS_ARCH"] != nil,
                "the cross lab test runs from make cross-tests (root, LANRAGE_BIN and LANRAGE_CROSS_ARCH set)"))
struct CrossBuildLabTests {
    @Test func twoAgentsGoDirectAndPing() throws {
        let arch = ProcessInfo.processInfo.environment["LANRAGE_CROSS_ARCH"] ?? "?"
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.restrictedCone), try lab.addSite(.symmetric)]
        let party = try PartyLab(lab)
        try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
        try party.startControl()
        let started = Date()
        let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
        for (index, agent) in agents.enumerated() {
            let peer = agent.waitForPeer(agents[1 - index].overlay, within: 90) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
            #expect(peer != nil, "\(arch): agent \(agent.index) never reached keepalive on the direct path: \(party.log(of: agent).suffix(4000))")
        }
        let elapsed = Date().timeIntervalSince(started)
        let pinged = agents[0].ping(agents[1].overlay) && agents[1].ping(agents[0].overlay)
        #expect(pinged, "\(arch): no ping across the overlay")
        party.keepLogs(of: agents, as: "cross-\(arch)", control: true)
        if pinged { print("CROSS-LAB \(arch): restricted cone ↔ symmetric direct after \(Int(elapsed * 1000)) ms, pings cross") }
    }
}
