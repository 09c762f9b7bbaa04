// `make demo`: a party in a lab of network namespaces — a control server, a relay, and two agents
// behind different NATs (restricted cone and symmetric by default; LANRAGE_DEMO_NATS="a,b" picks
// others, e.g. "symmetric,symmetric" for a relayed pair). Each agent learns its NAT with STUN on
// its WireGuard port, both punch at the instant the control server gives them, WireGuard (wireguard-go)
// takes the pinned endpoints, `lanrage status` shows both sides and a ping crosses the overlay.
// Everything is torn down at the end, even after a failure. Needs root.
import Foundation
import LabSupport
import Net

func say(_ text: String) { print("\n\u{1B}[1m== \(text)\u{1B}[0m") }

/// Runs `lanrage` in a namespace, echoing the command and its output.
@discardableResult
func lanrage(_ namespace: Namespace, _ arguments: [String]) throws -> String {
    print("\(namespace.name.split(separator: "-").last ?? "")$ lanrage \(arguments.joined(separator: " "))")
    let output = try namespace.run([Products.lanrage] + arguments)
    print(output, terminator: output.hasSuffix("\n") || output.isEmpty ? "" : "\n")
    return output
}

func behaviour(_ name: Substring) -> NATBehaviour? {
    NATBehaviour.allCases.first { $0.rawValue == name.trimmingCharacters(in: .whitespaces) }
}

func runDemo() throws -> Bool {
    let names = (ProcessInfo.processInfo.environment["LANRAGE_DEMO_NATS"] ?? "restricted cone,symmetric").split(separator: ",")
    guard names.count == 2, let first = behaviour(names[0]), let second = behaviour(names[1]) else {
        print("LANRAGE_DEMO_NATS must name two of: \(NATBehaviour.allCases.map(\.rawValue).joined(separator: ", "))")
        return false
    }
    let lab = try Lab()
    defer {
        say("Tearing the lab down")
        lab.shutdown()
    }
    say("The lab: a control server (192.0.2.1), a relay (192.0.2.20), two sites behind NATs")
    let sites = [try lab.addSite(first), try lab.addSite(second)]
    for (index, site) in sites.enumerated() {
        print("site \(index + 1): \(site.behaviour) NAT, public address \(site.publicAddress), agent at \(site.clientAddress)")
    }
    let party = try PartyLab(lab)
    try party.startRelay(in: try lab.addHost("relay", address: IPv4Address(192, 0, 2, 20)), address: IPv4Address(192, 0, 2, 20))
    try party.startControl()

    say("Starting both agents (lanrage agent --config …)")
    let started = Date()
    let agents = [try party.startAgent(in: sites[0].client, index: 1), try party.startAgent(in: sites[1].client, index: 2)]
    print(try String(contentsOf: agents[0].configuration, encoding: .utf8))
    let reached = agents.enumerated().allSatisfy { index, agent in
        agent.waitForPeer(agents[1 - index].overlay, within: 40) { $0["state"] as? String == "keepalive" } != nil
    }
    print("both peer machines in keepalive after \(Int(Date().timeIntervalSince(started) * 1000)) ms")

    say("The transitions agent 1 traced")
    for line in party.log(of: agents[0]).split(separator: "\n") where line.contains("logger=lanrage.peer") && line.contains("level=info") {
        print(line)
    }

    for agent in agents {
        say("lanrage status on agent \(agent.index)")
        try lanrage(agent.namespace, ["status", "--socket", agent.statusSocket])
    }

    say("Pinging across the overlay")
    let ping = try lanrage(agents[0].namespace, ["ping", "\(agents[1].overlay)", "--count", "3", "--socket", agents[0].statusSocket])
    let ok = reached && ping.contains("3 received")
    say(ok ? "Demo passed: a ping crossed the overlay" : "Demo FAILED")
    if !ok { print(party.log(of: agents[0]).suffix(4000)) }
    return ok
}

do {
    exit(try runDemo() ? 0 : 1)
} catch {
    print("demo failed: \(error)")
    exit(1)
}
