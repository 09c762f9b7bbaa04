import Foundation
import LabSupport
import Net
import Testing

/// A control server given by host name, resolved by the agent with the lab's own name server
/// (dnsmasq on 192.0.2.53, its names in a hosts file it reads again on SIGHUP): the name is
/// followed when it moves to a new address, and a name that does not resolve is reported.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentHostNameLabTests {
    static let name = "control.lab.example"
    static let nameServer = IPv4Address(192, 0, 2, 53)

    /// dnsmasq answering for lab.example from `hosts` (NXDOMAIN for names it does not list). It
    /// closes every descriptor it inherits, Foundation's watch on its children too (which then
    /// waits for it as if it had exited): a shell runs it and stays its parent, and dnsmasq's own
    /// PID (from its pid file) gets the signals, SIGTERM at the lab's shutdown.
    final class NameServer {
        let hosts: URL
        let pidFile: URL

        /// With `ipv6`, it also listens on ``Lab/hostIPv6(_:)`` of its address.
        init(_ lab: Lab, hosts entries: String, ipv6: Bool = false) throws {
            let host = try lab.addHost("dns", address: AgentHostNameLabTests.nameServer, ipv6: ipv6)
            hosts = lab.directory.appendingPathComponent("lab-hosts")
            pidFile = lab.directory.appendingPathComponent("dnsmasq.pid")
            try entries.write(to: hosts, atomically: true, encoding: .utf8)
            let command = ["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--addn-hosts=\(hosts.path)",
                           "--local=/lab.example/", "--listen-address=\(AgentHostNameLabTests.nameServer)\(ipv6 ? ",\(Lab.hostIPv6(AgentHostNameLabTests.nameServer))" : "")", "--bind-interfaces",
                           "--pid-file=\(pidFile.path)", "--user=root", "--group=root", "--log-queries"]
            try lab.spawn(in: host, ["sh", "-c", command.joined(separator: " ")], log: "dnsmasq.log")
            lab.atShutdown { [pidFile] in
                if let pid = NameServer.pid(pidFile) { kill(pid, SIGTERM) }
            }
            try host.waitForUDPListener(Endpoint(.v4(AgentHostNameLabTests.nameServer), 53))
        }

        static func pid(_ file: URL) -> pid_t? {
            (try? String(contentsOf: file, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        /// Rewrites the hosts file and has dnsmasq read it again.
        func update(_ entries: String) throws {
            try entries.write(to: hosts, atomically: true, encoding: .utf8)
            guard let pid = NameServer.pid(pidFile) else { throw CommandFailure(command: ["dnsmasq"], status: 1, output: "no pid file") }
            kill(pid, SIGHUP)
        }
    }

    /// An agent in `site` whose configuration names the control server `name`.
    static func startAgent(_ party: PartyLab, in site: Site, index: Int, name: String = name) throws -> AgentHandle {
        try party.lab.useNameServer(.v4(nameServer), in: site.client)
        return try party.startAgent(in: site.client, index: index, control: "\(name):\(party.control.port)")
    }

    /// The agent's `control` status once `condition` holds for it (polled, bounded).
    static func waitForControl(_ agent: AgentHandle, within seconds: Double, _ condition: ([String: Any]) -> Bool) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(seconds)
        var control: [String: Any]?
        repeat {
            control = agent.status()?["control"] as? [String: Any]
            if let control, condition(control) { break }
            usleep(200_000)
        } while Date() < deadline
        return control
    }

    @Test func theControlServersNameIsFollowedToItsNewAddress() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.fullCone), try lab.addSite(.restrictedCone)]
        let names = try NameServer(lab, hosts: "\(Lab.stunPrimary) \(Self.name)\n")
        let party = try PartyLab(lab)
        try party.startControl()
        let agents = try sites.enumerated().map { try Self.startAgent(party, in: $1, index: $0 + 1) }
        for agent in agents {
            let control = Self.waitForControl(agent, within: 20) { $0["state"] as? String == "registered" }
            #expect(control?["address"] as? String == "192.0.2.1:3478" && control?["server"] as? String == "\(Self.name):3478", "\(String(describing: control))")
        }
        #expect(agents[0].pingUntilAnswered(agents[1].overlay, within: 20) != nil, "the pair connects through the named server")

        // The server comes back at another address, and the name follows it.
        party.killControl()
        try names.update("\(Lab.stunAlternate) \(Self.name)\n")
        try party.startControl(moved: true)
        let moved = Date()
        for agent in agents {
            let control = Self.waitForControl(agent, within: 60) {
                $0["state"] as? String == "registered" && $0["address"] as? String == "192.0.2.2:3478"
            }
            #expect(control?["state"] as? String == "registered" && control?["address"] as? String == "192.0.2.2:3478", "\(String(describing: control))")
            #expect(party.log(of: agent).contains("server name moved"))
        }
        print("HOSTNAME-LAB both registered again at the new address after \(String(format: "%.1f", Date().timeIntervalSince(moved))) s")
        #expect(agents[0].pingUntilAnswered(agents[1].overlay, within: 20) != nil)
        let text = try AgentStatusExitLabTests.status(agents[0]).out
        #expect(text.contains("control: \(Self.name):3478 (192.0.2.2:3478) party lab"), "\(text)")
        party.keepLogs(of: agents, as: "hostname-moved", control: true)
    }

    @Test func aNameThatDoesNotResolveIsReportedUntilItDoes() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone)
        let names = try NameServer(lab, hosts: "")
        let party = try PartyLab(lab)
        try party.startControl()
        let agent = try Self.startAgent(party, in: site, index: 1)
        let found = AgentDiagnosticsLabTests.waitForProblem("unresolved", agent, within: 15)
        #expect(found.problem?["kind"] as? String == "unresolved", "\(found)")
        #expect(found.text.contains("problem: the control server's name \(Self.name) does not resolve: no such name (from 192.0.2.53:53)"), "\(found.text)")
        #expect(found.exit?.status == 1)

        // `lanrage netcheck` resolves a named STUN server the same way; it exits 68 for a name that does not resolve.
        do {
            _ = try site.client.run([Products.lanrage, "netcheck", "--stun", "\(Self.name):3478"])
            Issue.record("netcheck succeeded with a name that does not resolve")
        } catch let failure as CommandFailure {
            #expect(failure.status == 68 && failure.output.contains("\(Self.name) does not resolve: no such name"), "\(failure)")
        }

        try names.update("\(Lab.stunPrimary) \(Self.name)\n")
        let result = try AgentStatusExitLabTests.waitFor(0, agent, within: 30)
        #expect(result.status == 0 && !result.out.contains("problem:"), "\(result)")
        let report = try site.client.run([Products.lanrage, "netcheck", "--stun", "\(Self.name):3478", "--json"])
        #expect(report.contains("\"nat_type\""), "\(report)")
    }

    @Test func aRelayGivenByNameIsOfferedAndFollowedToItsNewAddress() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.symmetric)]
        let first = IPv4Address(192, 0, 2, 20), second = IPv4Address(192, 0, 2, 21)
        let names = try NameServer(lab, hosts: "\(first) relay.lab.example\n")
        try lab.useNameServer(.v4(Self.nameServer), in: lab.stunHost)
        let party = try PartyLab(lab)
        let oldRelay = try party.startRelay(in: try lab.addHost("relay", address: first), address: first)
        try party.startControl(relayNames: ["relay.lab.example:4000"])
        let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
        let relayed = agents[0].waitForPeer(agents[1].overlay, within: 40) { $0["path"] as? String == "relayed" }
        #expect(relayed?["relay"] as? String == "\(first):4000", "\(String(describing: relayed))")

        // The relay comes back at another address; the control server follows its name and offers it there.
        try party.startRelay(in: try lab.addHost("relay2", address: second), address: second, log: "relay2.log")
        try names.update("\(second) relay.lab.example\n")
        kill(oldRelay.processIdentifier, SIGKILL)
        let moved = Date()
        let again = agents[0].waitForPeer(agents[1].overlay, within: 120) {
            $0["state"] as? String == "keepalive" && $0["relay"] as? String == "\(second):4000"
        }
        #expect(again != nil, "\(String(describing: agents[0].peer(agents[1].overlay)))")
        if again != nil { print("HOSTNAME-LAB relayed through the relay's new address after \(String(format: "%.1f", Date().timeIntervalSince(moved))) s") }
        #expect(agents[0].pingUntilAnswered(agents[1].overlay, within: 20) != nil)
        let log = (try? String(contentsOf: lab.directory.appendingPathComponent("control.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("server name moved"), "the control server logs the move")
        party.keepLogs(of: agents, as: "hostname-relay", control: true)
    }
}
