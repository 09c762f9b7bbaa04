import Foundation
import LabSupport
import Net
import Testing

/// Faults while two agents hold a tunnel: each test breaks one thing and measures how long until a
/// ping crosses the overlay again (printed as `AGENT-FAULT`, reported in BENCHMARKS.md), restarting
/// nothing but what the fault itself restarts. Lab timings: keepalive 5 s, liveness poll 2 s
/// (so a dead path is noticed after 15–17 s of silence).
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentFaultLabTests {
    /// A party of two agents at sites `a` and `b`, connected on `path`.
    struct Setup {
        let lab: Lab
        let sites: [Site]
        let party: PartyLab
        let agents: [AgentHandle]
        var relayProcesses: [Process] = []
        var relayHosts: [Namespace] = []
    }

    static func connect(_ a: NATBehaviour, _ b: NATBehaviour, relays: Int = 1, loss: Bool = false,
                        within seconds: Double = 40, prepare: ([Site]) throws -> Void = { _ in }) throws -> Setup {
        let lab = try Lab()
        do {
            let sites = [try lab.addSite(a), try lab.addSite(b)]
            try prepare(sites)
            if loss {
                // 10% of every packet crossing the internet, both ways, control and STUN included.
                try lab.inet.run(["nft", "-f", "-"], input: """
                    table ip loss {
                      chain forward {
                        type filter hook forward priority -10; policy accept;
                        numgen random mod 10 == 0 drop
                      }
                    }

                    """)
            }
            let party = try PartyLab(lab)
            var relayProcesses: [Process] = []
            var relayHosts: [Namespace] = []
            for index in 0..<relays {
                let address = IPv4Address(192, 0, 2, UInt8(20 + index))
                relayHosts.append(try lab.addHost("relay\(index)", address: address))
                relayProcesses.append(try party.startRelay(in: relayHosts[index], address: address, log: "relay\(index).log"))
            }
            try party.startControl()
            let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
            let path = AgentMatrixLabTests.expectsDirect(a, b) ? "direct" : "relayed"
            for (index, agent) in agents.enumerated() {
                let peer = agent.waitForPeer(agents[1 - index].overlay, within: seconds) {
                    $0["state"] as? String == "keepalive" && $0["path"] as? String == path
                }
                guard peer != nil else {
                    party.keepLogs(of: agents, as: "fault-unconnected")
                    throw CommandFailure(command: ["connect"], status: 1, output: "agent \(agent.index) not connected: \(party.log(of: agent).suffix(4000))")
                }
            }
            return Setup(lab: lab, sites: sites, party: party, agents: agents, relayProcesses: relayProcesses, relayHosts: relayHosts)
        } catch {
            lab.shutdown()
            throw error
        }
    }

    static func report(_ fault: String, _ seconds: Double?) {
        print("AGENT-FAULT \(fault): \(seconds.map { "\(Int($0 * 1000)) ms" } ?? "no recovery")")
    }

    @Test func conntrackFlushOnTheNATRouter() throws {
        let setup = try Self.connect(.symmetric, .restrictedCone)
        defer { setup.lab.shutdown() }
        try setup.lab.flushConntrack(of: setup.sites[0])
        try setup.lab.flushConntrack(of: setup.sites[1])
        let recovery = setup.agents[0].pingUntilAnswered(setup.agents[1].overlay, within: 60)
        Self.report("conntrack -F on both NAT routers", recovery)
        #expect(recovery != nil)
        #expect(setup.agents[1].ping(setup.agents[0].overlay))
    }

    @Test func publicAddressChanges() throws {
        let setup = try Self.connect(.portRestrictedCone, .restrictedCone)
        defer { setup.lab.shutdown() }
        let moved = try setup.lab.changePublicAddress(of: setup.sites[0])
        let recovery = setup.agents[1].pingUntilAnswered(setup.agents[0].overlay, within: 60)
        Self.report("public address of a port-restricted NAT changed", recovery)
        #expect(recovery != nil, "\(setup.party.log(of: setup.agents[1]).suffix(5000))")
        let peer = setup.agents[1].waitForPeer(setup.agents[0].overlay, within: 30) {
            $0["path"] as? String == "direct" && ($0["endpoint"] as? String)?.hasPrefix("\(moved):") == true
        }
        #expect(peer != nil, "the direct path follows the new address \(moved): \(setup.agents[1].peer(setup.agents[0].overlay) ?? [:])")
    }

    @Test func relayKilledWhileDirectChangesNothing() throws {
        let setup = try Self.connect(.fullCone, .symmetric)
        defer { setup.lab.shutdown() }
        kill(setup.relayProcesses[0].processIdentifier, SIGKILL)
        // Twenty seconds of pings (longer than the dead-path limit): every one answered, path unchanged.
        var answered = 0
        for _ in 0..<20 {
            if setup.agents[0].ping(setup.agents[1].overlay) { answered += 1 }
            usleep(500_000)
        }
        #expect(answered == 20)
        #expect(setup.agents[0].peer(setup.agents[1].overlay)?["path"] as? String == "direct")
    }

    @Test func relayKilledWhileRelayedFallsBackToAnotherRelay() throws {
        let setup = try Self.connect(.symmetric, .symmetric, relays: 2)
        defer { setup.lab.shutdown() }
        let used = try #require(setup.agents[0].peer(setup.agents[1].overlay)?["relay"] as? String)
        let index = used.hasPrefix("192.0.2.20:") ? 0 : 1
        kill(setup.relayProcesses[index].processIdentifier, SIGKILL)
        let recovery = setup.agents[0].pingUntilAnswered(setup.agents[1].overlay, within: 90)
        Self.report("relay in use killed (symmetric ↔ symmetric, two relays)", recovery)
        for agent in setup.agents { try? setup.party.log(of: agent).write(toFile: "/tmp/relayfault\(agent.index).log", atomically: true, encoding: .utf8) }
        #expect(recovery != nil, "\(setup.party.log(of: setup.agents[0]).suffix(5000))")
        let other = index == 0 ? "192.0.2.21:4000" : "192.0.2.20:4000"
        let peer = setup.agents[0].waitForPeer(setup.agents[1].overlay, within: 30) { $0["relay"] as? String == other && $0["state"] as? String == "keepalive" }
        #expect(peer != nil, "moved to the other relay \(other)")
    }

    /// The one relay restarts (killed, started again at once as a supervisor would): every
    /// allocation is gone. The first side to notice the silence asks for a relay again, and the
    /// other, still relayed in Keepalive, follows the pair's new allocation when the offers come.
    @Test func relayRestartedWhileRelayedRecovers() throws {
        var setup = try Self.connect(.symmetric, .symmetric)
        defer { setup.lab.shutdown() }
        let old = setup.relayProcesses[0]
        kill(old.processIdentifier, SIGKILL)
        old.waitUntilExit()
        setup.relayProcesses[0] = try setup.party.startRelay(in: setup.relayHosts[0], address: IPv4Address(192, 0, 2, 20), log: "relay0-restarted.log")
        let restarted = Date()
        let recovery = setup.agents[0].pingUntilAnswered(setup.agents[1].overlay, within: 90)
        Self.report("relay restarted while relayed (symmetric ↔ symmetric, one relay)", recovery)
        #expect(recovery != nil, "\(setup.party.log(of: setup.agents[1]).suffix(5000))")
        for (index, agent) in setup.agents.enumerated() {
            let peer = agent.waitForPeer(setup.agents[1 - index].overlay, within: 30) {
                $0["state"] as? String == "keepalive" && $0["path"] as? String == "relayed"
            }
            #expect(peer != nil, "agent \(agent.index) relayed again: \(setup.party.log(of: agent).suffix(3000))")
        }
        print("AGENT-FAULT relay restarted: both sides relayed again \(Int(Date().timeIntervalSince(restarted))) s after the restart")
        setup.party.keepLogs(of: setup.agents, as: "relay-restart")
    }

    @Test func controlServerRestartKeepsTunnels() throws {
        let setup = try Self.connect(.portRestrictedCone, .fullCone)
        defer { setup.lab.shutdown() }
        setup.party.killControl()
        // Tunnels do not need the control server: pings keep crossing while it is down.
        for _ in 0..<5 {
            #expect(setup.agents[0].ping(setup.agents[1].overlay))
            usleep(500_000)
        }
        let restarted = Date()
        try setup.party.startControl()
        // Both agents notice (3 missed heartbeats) and register again with the restored server.
        var seconds: Double?
        while Date().timeIntervalSince(restarted) < 60 {
            let counts = setup.agents.map { ($0.status()?["control"] as? [String: Any])?["registrations"] as? Int ?? 0 }
            if counts.allSatisfy({ $0 >= 2 }) { seconds = Date().timeIntervalSince(restarted); break }
            usleep(200_000)
        }
        Self.report("control server killed and restarted: both agents registered again", seconds)
        #expect(seconds != nil)
        #expect(setup.agents[0].ping(setup.agents[1].overlay))
        _ = setup.relayProcesses
    }

    @Test func tenPercentLossStillConnects() throws {
        let started = Date()
        let setup = try Self.connect(.restrictedCone, .symmetric, loss: true, within: 60)
        defer { setup.lab.shutdown() }
        print("AGENT-FAULT 10% loss on every internet link: direct after \(Int(Date().timeIntervalSince(started) * 1000)) ms (lab setup included)")
        setup.party.keepLogs(of: setup.agents, as: "loss-\(Int(Date().timeIntervalSince(started) * 1000))", control: true)
        let output = try setup.agents[0].namespace.run(["ping", "-c", "10", "-i", "0.2", "-W", "1", "\(setup.agents[1].overlay)"], allowFailure: true)
        #expect(!output.contains(" 100% packet loss"), "\(output)")
    }

    /// The first WireGuard transport packets (keepalives, data) from site A's public address to site
    /// B are lost — B's router drops them, 240 bytes' worth; handshakes pass. B's side of the new
    /// direct path sees none of A's packets on it (A, confirmed, sends nothing more for a keepalive
    /// interval, and not at all while B's packets reach it), so B asks for a handshake and confirms
    /// the path within its first Direct window instead of falling back to the relay.
    @Test func lostKeepalivesOnANewDirectPathAreAnsweredWithAHandshake() throws {
        let setup = try Self.connect(.restrictedCone, .symmetric, within: 20) { sites in
            // WireGuard's type 4 (transport) is the payload's first 4 bytes, little-endian: 04 00 00 00.
            try sites[1].router.run(["nft", "-f", "-"], input: """
                table ip firstkeepalives {
                  chain forward {
                    type filter hook forward priority -10; policy accept;
                    ip saddr \(sites[0].publicAddress) udp dport 51820 @th,64,32 0x04000000 quota until 240 bytes drop
                  }
                }

                """)
        }
        defer { setup.lab.shutdown() }
        let dropped = try setup.sites[1].router.run("nft", "list", "table", "ip", "firstkeepalives")
        let log = setup.party.log(of: setup.agents[1])
        setup.party.keepLogs(of: setup.agents, as: "asked")
        #expect(!dropped.contains("used 0 bytes"), "A's packets on the new path were dropped: \(dropped)")
        #expect(log.contains("direct path not confirmed: handshake asked"))
        #expect(!log.contains("event=confirmTimeout"), "B fell back to the relay: \(log.suffix(3000))")
        // Once the quota is used up, A's packets pass.
        #expect(setup.agents[0].pingUntilAnswered(setup.agents[1].overlay, within: 5) != nil, "\(dropped)")
    }

    @Test func agentKilledAndRestartedRejoins() throws {
        let setup = try Self.connect(.portRestrictedCone, .restrictedCone)
        defer { setup.lab.shutdown() }
        #expect(setup.agents[0].stop(SIGKILL))
        // WireGuard (wireguard-go) outlives the agent: the tunnel keeps working while it is down.
        #expect(setup.agents[1].ping(setup.agents[0].overlay))
        let restarted = Date()
        let again = try setup.party.startAgent(in: setup.sites[0].client, index: 1)
        let peer = again.waitForPeer(setup.agents[1].overlay, within: 40) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
        let seconds = peer == nil ? nil : Date().timeIntervalSince(restarted)
        Self.report("agent SIGKILLed and restarted: back in keepalive", seconds)
        setup.party.keepLogs(of: [again, setup.agents[1]], as: "restart")
        #expect(peer != nil, "\(setup.party.log(of: again).suffix(5000))")
        #expect(again.ping(setup.agents[1].overlay))
    }

    @Test func sigtermRemovesPeersAndTheInterface() throws {
        let setup = try Self.connect(.fullCone, .restrictedCone)
        defer { setup.lab.shutdown() }
        let leaving = setup.agents[0]
        #expect(leaving.stop(SIGTERM))
        #expect(leaving.process?.terminationStatus == 0)
        let links = try leaving.namespace.run("ip", "-brief", "link")
        #expect(!links.contains(leaving.interface), "the interface the agent created is gone: \(links)")
        #expect(!FileManager.default.fileExists(atPath: leaving.statusSocket))
        // The other side hears that the member left and removes its WireGuard peer.
        let deadline = Date().addingTimeInterval(10)
        var peers = -1
        while Date() < deadline {
            peers = (setup.agents[1].status()?["peers"] as? [Any])?.count ?? -1
            if peers == 0 { break }
            usleep(100_000)
        }
        #expect(peers == 0)
        let shown = try setup.agents[1].namespace.run("wg", "show", setup.agents[1].interface, "peers")
        #expect(shown.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(shown)")
    }

    @Test func wireguardGoDyingStopsTheAgentForItsSupervisor() throws {
        let setup = try Self.connect(.fullCone, .restrictedCone)
        defer { setup.lab.shutdown() }
        let agent = setup.agents[0]
        // The agent started it, in the foreground, as its own child.
        let pid = try #require(Lab.wireguardGo(serving: agent.interface))
        #expect(kill(pid, SIGKILL) == 0)
        // Noticed at the next housekeeping (every 2 s): the agent leaves and exits non-zero, naming it,
        // so that systemd's or procd's restart builds the interface afresh.
        let deadline = Date().addingTimeInterval(10)
        while agent.process?.isRunning == true && Date() < deadline { usleep(50_000) }
        let log = setup.party.log(of: agent)
        #expect(agent.process?.isRunning == false, "\(log.suffix(3000))")
        #expect(agent.process?.terminationStatus == 69)
        #expect(log.contains("serving \(agent.interface) exited with status 137"), "\(log.suffix(3000))")
        let restarted = try setup.party.startAgent(in: setup.sites[0].client, index: 1)
        let peer = restarted.waitForPeer(setup.agents[1].overlay, within: 40) { $0["state"] as? String == "keepalive" }
        #expect(peer != nil, "\(setup.party.log(of: restarted).suffix(3000))")
    }

    @Test func sighupReloadsARenewedCertificate() throws {
        let setup = try Self.connect(.fullCone, .fullCone)
        defer { setup.lab.shutdown() }
        let agent = setup.agents[0]
        let original = try String(contentsOf: agent.configuration, encoding: .utf8)
        // A broken file is refused and the running configuration stays.
        try (original + "\nBogus = 1\n").write(to: agent.configuration, atomically: true, encoding: .utf8)
        kill(agent.process!.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(10)
        while !setup.party.log(of: agent).contains("reload refused"), Date() < deadline { usleep(50_000) }
        #expect(setup.party.log(of: agent).contains("reload refused"))
        // The administrator grants a second address (a renewed certificate): the agent takes it, and
        // the other member learns it as an allowed IP.
        try original.write(to: agent.configuration, atomically: true, encoding: .utf8)
        try setup.party.certify(agent, addresses: ["100.64.0.1/32", "100.64.1.1/32"])
        kill(agent.process!.processIdentifier, SIGHUP)
        let peer = setup.agents[1].waitForPeer(agent.overlay, within: 20) { ($0["addresses"] as? [String])?.contains("100.64.1.1/32") == true }
        #expect(peer != nil)
        #expect(agent.process?.isRunning == true)
        let ping = try setup.agents[1].namespace.run(["ping", "-c", "1", "-W", "2", "100.64.1.1"], allowFailure: true)
        #expect(ping.contains(" 0% packet loss"), "\(ping)")
    }
}
