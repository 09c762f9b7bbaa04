import Foundation
import LabSupport
import Net
import Testing

/// The path `status` reports is the one WireGuard uses. Two sites whose NATs let anyone in (open or
/// full cone) go direct without a punch while the early relay already carries their first packets;
/// with a ping running both ways from the moment the agents start, a packet still crossing the relay
/// after the switch can make WireGuard roam back to the relay's port. Every run must end with each
/// side's WireGuard endpoint on the peer's public endpoint, `status` saying direct with that endpoint,
/// and the relay forwarding nothing more (its sends, counted by nftables on the relay host, stay flat).
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentPathTruthLabTests {
    /// Runs per cell (`LANRAGE_PATH_RUNS` overrides).
    static let runs = ProcessInfo.processInfo.environment["LANRAGE_PATH_RUNS"].flatMap(Int.init) ?? 30
    static let relayAddress = IPv4Address(192, 0, 2, 20)

    @Test(arguments: [NATBehaviour.open, .fullCone])
    func wireGuardEndsOnTheDirectPath(_ nat: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(nat), try lab.addSite(nat)]
        let party = try PartyLab(lab)
        let relayHost = try lab.addHost("relay", address: Self.relayAddress)
        try party.startRelay(in: relayHost, address: Self.relayAddress)
        try party.startControl()
        // What the relay sends from its allocation ports: every datagram it forwards.
        try relayHost.run(["nft", "-f", "-"], input: """
            table inet relaycount {
              counter forwarded {}
              chain output {
                type filter hook output priority 0; policy accept;
                udp sport 4001-4199 counter name forwarded
              }
            }

            """)
        var failures: [String] = []
        var roamed = 0
        for run in 1...Self.runs {
            if let failure = try Self.run(run, party: party, sites: sites, relayHost: relayHost) {
                failures.append(failure)
            }
            // Each run starts the agents afresh, with new logs.
            let corrections = party.agents.suffix(2).map { party.log(of: $0).components(separatedBy: "roamed to the relay").count - 1 }.reduce(0, +)
            if corrections > 0 { roamed += 1 }
        }
        #expect(failures.isEmpty, "\(nat) ↔ \(nat): \(failures.count) of \(Self.runs) runs did not end on the direct path:\n\(failures.joined(separator: "\n"))")
        print("AGENT-PATH-TRUTH \(nat) ↔ \(nat): \(Self.runs - failures.count) of \(Self.runs) runs direct, WireGuard and status agreeing, relay flat; "
              + "WireGuard roamed back to the relay and was set back in \(roamed)")
    }

    /// One run: both agents start with pings already running, connect, and are checked; then stopped.
    /// Returns what went wrong, or nil.
    static func run(_ run: Int, party: PartyLab, sites: [Site], relayHost: Namespace) throws -> String? {
        let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
        let pings = try agents.indices.map { index in
            try party.lab.spawn(in: agents[index].namespace, ["ping", "-i", "0.2", "-W", "1", "\(agents[1 - index].overlay)"],
                                log: "ping\(index + 1)-run\(run).log")
        }
        defer {
            for ping in pings where ping.isRunning { kill(ping.processIdentifier, SIGTERM) }
            for agent in agents { agent.stop() }
        }
        func failure(_ what: String) -> String {
            party.keepLogs(of: agents, as: "path-truth-run\(run)")
            return "run \(run): \(what)"
        }
        for (index, agent) in agents.enumerated() {
            guard agent.waitForPeer(agents[1 - index].overlay, within: 20, { $0["state"] as? String == "keepalive" }) != nil else {
                return failure("agent \(agent.index) never reached keepalive: \(agent.peer(agents[1 - index].overlay) ?? [:])")
            }
        }
        // Each side's own public endpoint, as its STUN discovery found it.
        let publicEndpoints = agents.map { (($0.status()?["nat"] as? [String: Any])?["public_endpoint"] as? String) ?? "?" }
        // WireGuard on each side ends on the peer's public endpoint, and status says so.
        let deadline = Date().addingTimeInterval(10)
        var seen: [String] = []
        while true {
            seen = try agents.indices.map { index in
                let agent = agents[index], expected = publicEndpoints[1 - index]
                let wireGuard = try Self.wireGuardEndpoint(agent)
                let peer = agent.peer(agents[1 - index].overlay) ?? [:]
                let status = "\(peer["path"] ?? "-") \(peer["endpoint"] ?? "-")"
                return wireGuard == expected && status == "direct \(expected)" ? "" :
                    "agent \(agent.index): WireGuard \(wireGuard), status \(status), peer's public endpoint \(expected)"
            }.filter { !$0.isEmpty }
            if seen.isEmpty { break }
            if Date() > deadline { return failure(seen.joined(separator: "; ")) }
            usleep(100_000)
        }
        // The relay forwards nothing more while both pings go on (a window of 2 s, status read throughout).
        let before = try Self.forwarded(relayHost)
        let window = Date().addingTimeInterval(2)
        while Date() < window {
            for (index, agent) in agents.enumerated() {
                let peer = agent.peer(agents[1 - index].overlay) ?? [:]
                guard peer["path"] as? String == "direct" else { return failure("agent \(agent.index) left the direct path: \(peer)") }
            }
            usleep(200_000)
        }
        let after = try Self.forwarded(relayHost)
        guard after == before else { return failure("the relay forwarded \(after - before) datagrams after the switch") }
        return nil
    }

    /// An idle tunnel keeps its path. With no traffic, WireGuard's persistent keepalives may go one
    /// way only: a received packet restarts the receiver's keepalive timer too, so while one side's
    /// timer fires first, the other sends nothing. Members with different keepalive intervals are
    /// always so (here 5 s and 20 s); on one path with jitter it comes and goes. The side that sends
    /// hears nothing but a handshake every two minutes or more, longer than the three keepalive
    /// intervals of silence that count as a lost path. Its connection must still not leave
    /// Keepalive: a minute of idling with no transition out of it on either side.
    @Test func anIdleTunnelStaysOnItsPath() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.fullCone), try lab.addSite(.portRestrictedCone)]
        let party = try PartyLab(lab)
        let relayHost = try lab.addHost("relay", address: Self.relayAddress)
        try party.startRelay(in: relayHost, address: Self.relayAddress)
        try party.startControl()
        let agents = [try party.startAgent(in: sites[0].client, index: 1),
                      try party.startAgent(in: sites[1].client, index: 2, agent: ["PersistentKeepalive = 20s"])]
        defer { for agent in agents { agent.stop() } }
        for (index, agent) in agents.enumerated() {
            let peer = agent.waitForPeer(agents[1 - index].overlay, within: 30) { $0["state"] as? String == "keepalive" && $0["path"] as? String == "direct" }
            try #require(peer != nil, "agent \(agent.index) never went direct: \(agent.peer(agents[1 - index].overlay) ?? [:])")
        }
        func leaving(_ agent: AgentHandle) -> Int {
            party.log(of: agent).split(separator: "\n").filter { $0.contains("from=keepalive") && !$0.contains("to=keepalive") }.count
        }
        let left = agents.map(leaving)
        let end = Date().addingTimeInterval(60)
        var states: [String] = []
        while Date() < end {
            states = agents.indices.map { index in
                let peer = agents[index].peer(agents[1 - index].overlay) ?? [:]
                return "\(peer["state"] ?? "-") \(peer["path"] ?? "-")"
            }
            usleep(500_000)
        }
        let after = agents.map(leaving)
        if after != left { party.keepLogs(of: agents, as: "idle-tunnel") }
        #expect(after == left, "transitions out of keepalive while idle: \(zip(after, left).map { $0 - $1 }), states at the end: \(states)")
        #expect(states == ["keepalive direct", "keepalive direct"])
    }

    /// `wg show INTERFACE endpoints`: the one peer's endpoint.
    static func wireGuardEndpoint(_ agent: AgentHandle) throws -> String {
        let line = try agent.namespace.run(["wg", "show", agent.interface, "endpoints"], allowFailure: true)
        return line.split(whereSeparator: { $0 == "\t" || $0 == "\n" }).dropFirst().first.map(String.init) ?? "none"
    }

    /// Datagrams the relay host sent from its allocation ports so far.
    static func forwarded(_ relayHost: Namespace) throws -> Int {
        let output = try relayHost.run(["nft", "list", "counter", "inet", "relaycount", "forwarded"])
        guard let range = output.range(of: "packets "),
              let count = Int(output[range.upperBound...].prefix { $0.isNumber }) else { return -1 }
        return count
    }
}
