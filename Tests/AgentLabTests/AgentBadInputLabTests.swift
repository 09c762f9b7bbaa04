import Foundation
import LabSupport
import Net
import Testing

/// What a user gets wrong, and what arrives malformed: a clear error naming the problem, no crash,
/// no hang, nothing left behind.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentBadInputLabTests {
    /// Runs `lanrage agent` to its exit (bounded); its status and what it printed.
    static func runToExit(_ namespace: Namespace, _ configuration: URL, within seconds: Double = 15) throws -> (Int32, String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("agent-exit-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log")
        defer { try? FileManager.default.removeItem(at: output) }
        let process = try namespace.spawn(["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", Products.lanrage, "agent",
                                           "--config", configuration.path], output: output)
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return (-1, "still running after \(seconds) s")
        }
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }

    @Test func aPortInUseIsNamedAndNothingIsLeftBehind() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone, verify: false)
        let party = try PartyLab(lab)
        let holder = try site.client.udpSocket(binding: Endpoint("0.0.0.0:51820")!)
        let agent = try party.prepareAgent(in: site.client, index: 1)
        let (status, output) = try Self.runToExit(site.client, agent.configuration)
        #expect(status != 0 && status != -1, "\(output)")
        #expect(output.contains("51820"), "the message names the port: \(output)")
        let links = try site.client.run("ip", "-brief", "link")
        #expect(!links.contains(agent.interface), "the interface the agent created is gone again: \(links)")
        _ = holder
    }

    @Test func withoutCapNetAdminNothingIsTouched() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone, verify: false)
        let agent = try PartyLab(lab).prepareAgent(in: site.client, index: 1)
        let output = try site.client.run(["capsh", "--drop=cap_net_admin", "--", "-c",
                                          "\(Products.lanrage) agent --config \(agent.configuration.path) 2>&1; echo exit=$?"], allowFailure: true)
        #expect(output.contains("cannot run the agent: CAP_NET_ADMIN is missing") && output.contains("exit=77"), "\(output)")
        #expect(!(try site.client.run("ip", "-brief", "link")).contains(agent.interface))
    }

    @Test func aSecondAgentOnTheSameStatusSocketIsRefused() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone, verify: false)
        let party = try PartyLab(lab)
        try party.startControl()
        let first = try party.startAgent(in: site.client, index: 1)
        let deadline = Date().addingTimeInterval(10)
        while first.status() == nil && Date() < deadline { usleep(50_000) }
        #expect(first.status() != nil)
        // Same status socket, another interface and port.
        let second = first.directory.appendingPathComponent("second.conf")
        try String(contentsOf: first.configuration, encoding: .utf8)
            .replacingOccurrences(of: "ListenPort = 51820", with: "ListenPort = 51821")
            .replacingOccurrences(of: "Name = \(first.interface)", with: "Name = \(first.interface)b")
            .write(to: second, atomically: true, encoding: .utf8)
        let (status, output) = try Self.runToExit(site.client, second)
        #expect(status == 69, "\(output)")
        #expect(output.contains("another agent is running"), "\(output)")
        #expect(first.status() != nil, "the first agent still answers")
        #expect(!(try site.client.run("ip", "-brief", "link")).contains("\(first.interface)b"))
    }

    @Test func garbageOnEveryPortChangesNothing() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.open, verify: false), try lab.addSite(.open, verify: false)]
        let party = try PartyLab(lab)
        try party.startControl()
        let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
        #expect(agents[0].waitForPeer(agents[1].overlay, within: 30) { $0["state"] as? String == "keepalive" } != nil)
        // Datagrams of every length to the WireGuard port (raw path: punch and STUN parsers), some
        // shaped like punch messages and STUN headers, from another host.
        let socket = try sites[1].client.udpSocket(binding: Endpoint("0.0.0.0:0")!)
        let target = Endpoint(.v4(sites[0].clientAddress), 51820)
        var generator = SystemRandomNumberGenerator()
        for length in 0..<400 {
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if length > 8, length % 3 == 0 { bytes.replaceSubrange(0..<8, with: Array("LANRAGE_".utf8)) }
            if length >= 20, length % 3 == 1 { bytes.replaceSubrange(4..<8, with: [0x21, 0x12, 0xA4, 0x42]) }
            _ = try? socket.send(bytes, to: target)
        }
        // Nonsense on the status socket.
        for request in ["", "bogus", "peer", "peer nobody", String(repeating: "x", count: 5000)] {
            let stream = try UnixStream.connect(agents[0].statusSocket)
            try stream.write(Array("\(request)\n".utf8))
            let answer = String(decoding: try stream.read(), as: UTF8.self)
            #expect(answer.hasPrefix("error="), "\(request.prefix(20)) → \(answer)")
        }
        #expect(agents[0].process?.isRunning == true)
        #expect(agents[0].peer(agents[1].overlay)?["state"] as? String == "keepalive")
        #expect(agents[0].ping(agents[1].overlay))
    }
}
