// `make demo`: two members of a party behind different NATs in a lab of network namespaces.
// LANrage learns each NAT through STUN on the WireGuard port, punches a hole between the two
// WireGuard ports, points WireGuard at the pinned endpoints and a ping crosses the overlay.
// Everything is torn down at the end, even after a failure. Needs root.
import Foundation
import LabSupport
import Net

func say(_ text: String) { print("\n\u{1B}[1m== \(text)\u{1B}[0m") }

/// Runs `lanrage` in a namespace, echoing the command and its output.
@discardableResult
func lanrage(_ namespace: Namespace, _ arguments: String..., quiet: Bool = false) throws -> String {
    print("\(namespace.name.split(separator: "-").last ?? "")$ lanrage \(arguments.joined(separator: " "))")
    let output = try namespace.run([Products.lanrage] + arguments)
    if !quiet { print(output, terminator: output.hasSuffix("\n") || output.isEmpty ? "" : "\n") }
    return output
}

struct DemoMember {
    let name: String
    let site: Site
    let interface: String
    let overlay: String
    let keyFile: String
    var publicKey = ""
    var reflexive = ""

    /// Writes this member's wg-quick file (with `peer` at `endpoint` when given) and applies it.
    func apply(_ lab: Lab, peer: DemoMember? = nil, endpoint: String? = nil) throws {
        let config = lab.directory.appendingPathComponent("\(name).conf")
        var text = """
            [Interface]
            PrivateKey = \(try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
            ListenPort = 51820
            Address = \(overlay)/24

            """
        if let peer, let endpoint {
            text += """

                [Peer]
                PublicKey = \(peer.publicKey)
                Endpoint = \(endpoint)
                AllowedIPs = \(peer.overlay)/32
                PersistentKeepalive = 25

                """
        }
        try text.write(to: config, atomically: true, encoding: .utf8)
        try lanrage(site.client, "wg", "apply", interface, config.path)
    }
}

guard Lab.isAvailable else {
    print("make demo needs root: it builds network namespaces (run: sudo make demo)")
    exit(77)
}

/// The whole demo; `interfaces` collects what to delete at the end.
func demo(_ lab: Lab, _ interfaces: inout [(Namespace, String)]) throws {
    say("The lab: a STUN server with two addresses on the internet, two sites behind NAT routers")
    let alice = try lab.addSite(.restrictedCone)
    let bob = try lab.addSite(.symmetric)
    print("alice: \(alice.clientAddress) behind a \(alice.behaviour) NAT (public \(alice.publicAddress))")
    print("bob:   \(bob.clientAddress) behind a \(bob.behaviour) NAT (public \(bob.publicAddress))")
    try lab.spawn(in: lab.stunHost, [Products.lanrage, "stun-server", "--listen", "192.0.2.1:3478", "--alternate", "192.0.2.2:3479"],
                  log: "stun.log")
    try lab.stunHost.waitForUDPListener(Endpoint("192.0.2.2:3479")!)

    let tag = getpid() % 10000
    var members = [
        DemoMember(name: "alice", site: alice, interface: "lra\(tag)", overlay: "100.64.0.1", keyFile: lab.directory.appendingPathComponent("alice.key").path),
        DemoMember(name: "bob", site: bob, interface: "lrb\(tag)", overlay: "100.64.0.2", keyFile: lab.directory.appendingPathComponent("bob.key").path),
    ]

    say("Keys and WireGuard interfaces (wireguard-go, configured by lanrage over UAPI), listening on 51820")
    for index in members.indices {
        let member = members[index]
        try lanrage(member.site.client, "genkey", "--output", member.keyFile)
        members[index].publicKey = try member.site.client.run(["sh", "-c", "\(Products.lanrage) pubkey < \(member.keyFile)"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        interfaces.append((member.site.client, member.interface))
        try members[index].apply(lab)
    }

    say("NAT detection: STUN through the raw path on the port WireGuard owns (RFC 5780)")
    for index in members.indices {
        let member = members[index]
        let json = try lanrage(member.site.client, "netcheck", "--stun", "192.0.2.1:3478", "--port", "51820", "--json", quiet: true)
        let report = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
        members[index].reflexive = report["publicEndpoint"] as? String ?? ""
        print("  \(member.name): \(report["natType"] ?? "?") (mapping \(report["mapping"] ?? "?"), filtering \(report["filtering"] ?? "?")), public endpoint \(members[index].reflexive)")
    }

    say("Coordinated punch: both sides start at the same instant, authenticated LANRAGE_PUNCH / ACK")
    let start = Int(Date().timeIntervalSince1970 * 1000) + 1500
    var punches: [(DemoMember, Process, URL)] = []
    for (index, member) in members.enumerated() {
        let peer = members[1 - index]
        let output = lab.directory.appendingPathComponent("\(member.name).punch")
        print("\(member.name)$ lanrage punch --port 51820 --key-file \(member.name).key --peer \(peer.publicKey) --candidate \(peer.reflexive) --start-at \(start) --json")
        let process = try member.site.client.spawn([Products.lanrage, "punch", "--port", "51820", "--key-file", member.keyFile,
                                                    "--peer", peer.publicKey, "--candidate", peer.reflexive,
                                                    "--session", "\(start)", "--start-at", "\(start)", "--json"], output: output)
        punches.append((member, process, output))
    }
    var pinned: [String: String] = [:]
    for (member, process, output) in punches {
        process.waitUntilExit()
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        let json = text.firstIndex(of: "{").map { String(text[$0...]) } ?? ""
        let report = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? [:]
        if report["pinned"] as? String == nil { print(text) }
        pinned[member.name] = report["pinned"] as? String
        print("  \(member.name) pinned \(report["pinned"] ?? "nothing") after \(report["elapsedMs"] ?? "?") ms")
    }
    guard let alicePinned = pinned["alice"], let bobPinned = pinned["bob"] else {
        throw CommandFailure(command: ["lanrage", "punch"], status: 1, output: "no direct path (the relay comes with the control plane)")
    }

    say("WireGuard points at the pinned endpoints")
    for (index, member) in members.enumerated() {
        try member.apply(lab, peer: members[1 - index], endpoint: member.name == "alice" ? alicePinned : bobPinned)
    }

    say("A ping across the overlay, through both NATs, on the direct path")
    print(try alice.client.run("ping", "-c", "3", "-W", "2", "100.64.0.2"))
    try lanrage(alice.client, "wg", "show", members[0].interface)
    try lanrage(bob.client, "wg", "show", members[1].interface)
}

let lab = try Lab()
var interfaces: [(Namespace, String)] = []
var failed = false
do {
    try demo(lab, &interfaces)
} catch {
    print("demo failed: \(error)")
    failed = true
}
say("Tearing the lab down")
for (namespace, interface) in interfaces {
    _ = try? namespace.run([Products.lanrage, "wg", "delete", interface], allowFailure: true)
}
lab.shutdown()
exit(failed ? 1 : 0)
