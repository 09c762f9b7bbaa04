import Foundation
import LabSupport
import Net
import Testing

/// `lanrage punch` run by two members at once, in two sites of the lab, next to wireguard-go.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct PunchCommandLabTests {
    @Test func twoMembersPinEachOther() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let alice = try lab.addSite(.restrictedCone), bob = try lab.addSite(.symmetric)
        let tag = lab.prefix.split(separator: "-").last.map(String.init) ?? "0"
        try lab.startWireGuardGo(in: alice.client, interface: "pca\(getpid() % 1000)x\(tag)", listenPort: 51820)
        try lab.startWireGuardGo(in: bob.client, interface: "pcb\(getpid() % 1000)x\(tag)", listenPort: 51820)
        var keys: [(file: String, publicKey: String)] = []
        for name in ["alice", "bob"] {
            let file = lab.directory.appendingPathComponent("\(name).key").path
            try LabSupport.run([Products.lanrage, "genkey", "--output", file])
            let publicKey = try LabSupport.run(["sh", "-c", "\(Products.lanrage) pubkey < \(file)"]).trimmingCharacters(in: .whitespacesAndNewlines)
            keys.append((file, publicKey))
        }
        // Bob's NAT maps per destination: Alice only knows the public address, any port will do —
        // Bob's PUNCH reaches her from a fresh port, which she learns.
        // Both start 2 s from now: a process scheduled late on a loaded machine still starts on time.
        let start = Int(Date().timeIntervalSince1970 * 1000) + 2000
        let sides = [(alice, keys[0], keys[1], Endpoint(.v4(bob.publicAddress), 3478)),
                     (bob, keys[1], keys[0], Endpoint(.v4(alice.publicAddress), 51820))]
        var runs: [(Process, URL)] = []
        for (index, (site, own, peer, candidate)) in sides.enumerated() {
            let output = lab.directory.appendingPathComponent("punch\(index).json")
            runs.append((try site.client.spawn([Products.lanrage, "punch", "--port", "51820", "--key-file", own.file,
                                                "--peer", peer.publicKey, "--candidate", candidate.description,
                                                "--session", "7", "--start-at", "\(start)", "--json"], output: output), output))
        }
        var pinned: [Endpoint?] = [], texts: [String] = []
        for (process, output) in runs {
            process.waitUntilExit()
            let text = try String(contentsOf: output, encoding: .utf8)
            #expect(process.terminationStatus == 0, "\(text)")
            let report = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            pinned.append((report?["pinned"] as? String).flatMap { Endpoint($0) })
            texts.append(text)
        }
        #expect(pinned[0]?.address == .v4(bob.publicAddress), "Alice pinned Bob's fresh mapping: \(texts[0])")
        #expect(pinned[1] == Endpoint(.v4(alice.publicAddress), 51820), "Bob pinned Alice's WireGuard port: \(texts[1])")
    }
}
