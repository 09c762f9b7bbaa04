import Foundation
import Net
import Testing
@testable import WireGuard

/// Two real wireguard-go interfaces in two network namespaces joined by veth, configured only through
/// `lanrage wg apply`; a ping crosses the overlay and `lanrage wg show` reads back the handshake and counters.
@Suite(.serialized, .enabled(if: Lab.isRoot && UAPIBackend.findInPath("wireguard-go") != nil, "needs root and wireguard-go"))
struct UAPILabTests {
    struct Side {
        var namespace: String
        var interface: String
        var veth: String
        var underlay: String
        var overlay: String
        var port: Int
        var key: Key
    }

    func config(_ me: Side, peer: Side, keepalive: Int? = nil, extraAllowed: String = "", includePeer: Bool = true) -> String {
        var text = """
            # written by UAPILabTests
            [Interface]
            PrivateKey = \(me.key.base64)
            ListenPort = \(me.port)
            Address = \(me.overlay)/24

            """
        if includePeer {
            text += """
                [Peer]
                PublicKey = \(peer.key.publicKey.base64)
                Endpoint = \(peer.underlay):\(peer.port)
                AllowedIPs = \(peer.overlay)/32\(extraAllowed)

                """
            if let keepalive { text += "PersistentKeepalive = \(keepalive)\n" }
        }
        return text
    }

    func write(_ text: String, _ name: String, in folder: URL) throws -> String {
        let url = folder.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func show(_ lab: Lab, _ side: Side) throws -> [String: Any] {
        let result = try lab.run(side.namespace, [Run.lanrage, "wg", "show", side.interface, "--json", "--backend", "uapi"])
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
            throw Run.CommandFailed(command: "lanrage wg show", status: result.status, error: result.error)
        }
        return object
    }

    @Test func pingCrossesTheOverlayAndHandshakeIsReadBack() throws {
        Lab.removeStale()
        let lab = Lab(tag: "u")
        defer { lab.tearDown() }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(lab.prefix)-conf")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }

        var a = Side(namespace: try lab.namespace("a"), interface: lab.prefix + "wa", veth: lab.prefix + "va",
                     underlay: "192.0.2.1", overlay: "100.64.0.1", port: 51820, key: .generatePrivate())
        var b = Side(namespace: try lab.namespace("b"), interface: lab.prefix + "wb", veth: lab.prefix + "vb",
                     underlay: "192.0.2.2", overlay: "100.64.0.2", port: 51821, key: .generatePrivate())
        try Run.checked(["ip", "link", "add", a.veth, "netns", a.namespace, "type", "veth", "peer", "name", b.veth, "netns", b.namespace])
        for side in [a, b] {
            try Run.checked(["ip", "-n", side.namespace, "addr", "add", side.underlay + "/24", "dev", side.veth])
            try Run.checked(["ip", "-n", side.namespace, "link", "set", side.veth, "up"])
        }

        let fileA = try write(config(a, peer: b), "a.conf", in: folder)
        let fileB = try write(config(b, peer: a), "b.conf", in: folder)
        for (side, file) in [(a, fileA), (b, fileB)] {
            let applied = try lab.run(side.namespace, [Run.lanrage, "wg", "apply", side.interface, file, "--backend", "uapi"])
            #expect(applied.status == 0, "apply failed: \(applied.error)")
            #expect(applied.output.contains("created") && applied.output.contains("1 peer(s) added"))
            #expect(!applied.output.contains(side.key.base64) && !applied.error.contains(side.key.base64))
            // One structured log line (standard error), naming the public key, never the private one.
            #expect(applied.error.contains("msg=\"wireguard applied\"") && applied.error.contains("peers_added=1")
                    && applied.error.contains(side.key.publicKey.base64), "\(applied.error)")
        }

        // The ping crosses the overlay (the first packet triggers the handshake).
        let ping = try lab.run(a.namespace, ["ping", "-c", "3", "-i", "0.2", "-W", "2", b.overlay])
        #expect(ping.status == 0, "ping over WireGuard failed: \(ping.output)")

        // LANrage reads back a recent handshake and non-zero counters on both sides.
        let now = Int(Date().timeIntervalSince1970)
        var firstCounters: [(Int, Int)] = []
        for side in [a, b] {
            let device = try show(lab, side)
            #expect(device["private_key"] as? String == "(hidden)")
            #expect(device["public_key"] as? String == side.key.publicKey.base64)
            let peers = try #require(device["peers"] as? [[String: Any]])
            #expect(peers.count == 1)
            let peer = try #require(peers.first)
            let handshake = try #require(peer["latest_handshake"] as? Int, "no handshake read back")
            #expect(abs(now - handshake) < 30)
            let rx = try #require(peer["rx_bytes"] as? Int), tx = try #require(peer["tx_bytes"] as? Int)
            #expect(rx > 0 && tx > 0)
            firstCounters.append((rx, tx))
        }
        // The text form hides the private key and names the handshake.
        let text = try lab.run(a.namespace, [Run.lanrage, "wg", "show", a.interface])
        #expect(text.output.contains("private key: (hidden)") && text.output.contains("latest handshake:"))
        #expect(!text.output.contains(a.key.base64))
        // And wg itself agrees with what LANrage configured.
        let dump = try lab.run(a.namespace, ["wg", "show", a.interface, "peers"])
        #expect(dump.output.trimmingCharacters(in: .whitespacesAndNewlines) == b.key.publicKey.base64)

        // More traffic: the counters grow.
        #expect(try lab.run(b.namespace, ["ping", "-c", "2", "-i", "0.2", "-W", "2", a.overlay]).status == 0)
        let grown = try #require((try show(lab, a)["peers"] as? [[String: Any]])?.first)
        #expect((grown["rx_bytes"] as? Int ?? 0) > firstCounters[0].0)
        #expect((grown["tx_bytes"] as? Int ?? 0) > firstCounters[0].1)

        // Re-applying the same file changes nothing (and keeps the session: the handshake time stays).
        let again = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.interface, fileA, "--backend", "uapi"])
        #expect(again.status == 0 && again.output.contains("unchanged"), "\(again.output)")

        // An updated file updates in place: new allowed IPs and a keepalive.
        let updated = try write(config(a, peer: b, keepalive: 15, extraAllowed: ", 100.64.9.0/24"), "a2.conf", in: folder)
        let update = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.interface, updated, "--backend", "uapi"])
        #expect(update.status == 0 && update.output.contains("1 peer(s) updated"), "\(update.output)")
        let updatedPeer = try #require((try show(lab, a)["peers"] as? [[String: Any]])?.first)
        #expect(Set(updatedPeer["allowed_ips"] as? [String] ?? []) == ["100.64.0.2/32", "100.64.9.0/24"])
        #expect(updatedPeer["persistent_keepalive"] as? Int == 15)
        let routes = try Run.checked(["ip", "-n", a.namespace, "route", "show", "dev", a.interface])
        #expect(routes.contains("100.64.9.0/24"))

        // Bad input leaves the interface exactly as it was.
        let before = try lab.run(a.namespace, ["wg", "showconf", a.interface]).output
        let good = config(a, peer: b)
        let goodLines = good.split(separator: "\n", omittingEmptySubsequences: false)
        let badLine = try write(good + "Bogus = 1\n", "bad-line.conf", in: folder)
        let bad = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.interface, badLine, "--backend", "uapi"])
        #expect(bad.status == 78)
        #expect(bad.error.contains("bad-line.conf:\(goodLines.count):") && bad.error.contains("Bogus"), "\(bad.error)")
        let keyLine = try #require(goodLines.firstIndex { $0.hasPrefix("PublicKey") }) + 1
        let badKey = try write(good.replacingOccurrences(of: b.key.publicKey.base64, with: "not+a+key" + b.key.publicKey.base64.dropFirst(9).dropLast(2) + "="), "bad-key.conf", in: folder)
        let badKeyResult = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.interface, badKey, "--backend", "uapi"])
        #expect(badKeyResult.status == 78 && badKeyResult.error.contains("bad-key.conf:\(keyLine): PublicKey"), "\(badKeyResult.error)")
        // An existing interface that is not WireGuard.
        let clash = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.veth, fileA, "--backend", "uapi"])
        #expect(clash.status == 1 && clash.error.contains("exists"), "\(clash.error)")
        // Without CAP_NET_ADMIN.
        let unprivileged = try lab.run(a.namespace, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                                     Run.lanrage, "wg", "apply", a.interface, updated, "--backend", "uapi"])
        #expect(unprivileged.status == 77 && unprivileged.error.contains("CAP_NET_ADMIN"), "\(unprivileged.error)")
        // No kernel module (this kernel has none) and no userspace WireGuard on PATH.
        let none = try lab.run(a.namespace, ["env", "PATH=/nonexistent", Run.lanrage, "wg", "apply", lab.prefix + "wx", fileA])
        #expect(none.status == 69 && none.error.contains("no WireGuard") && none.error.contains("wireguard-go"), "\(none.error)")
        #expect(try lab.run(a.namespace, ["wg", "showconf", a.interface]).output == before)
        #expect(try Run.command(["ip", "-n", a.namespace, "link", "show", lab.prefix + "wx"]).status != 0)

        // A listen port another socket holds: refused, the interface left as it was.
        let holder = try InNamespace.run(a.namespace) { try UDPSocket(binding: Endpoint("0.0.0.0:51999")!) }
        let busyPort = try write(config(a, peer: b).replacingOccurrences(of: "ListenPort = \(a.port)", with: "ListenPort = 51999"), "busy.conf", in: folder)
        let busy = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.interface, busyPort, "--backend", "uapi"])
        #expect(busy.status == 1 && busy.error.contains("another process holds UDP port 51999") && busy.error.contains("nothing was changed"), "\(busy.error)")
        let afterBusy = try lab.run(a.namespace, ["wg", "showconf", a.interface]).output
        #expect(afterBusy == before, "\(before)\n----\n\(afterBusy)")
        // The same on a new interface: it is not left behind.
        let fresh = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", lab.prefix + "wn", busyPort, "--backend", "uapi"])
        #expect(fresh.status == 1)
        #expect(try Run.command(["ip", "-n", a.namespace, "link", "show", lab.prefix + "wn"]).status != 0)
        withExtendedLifetime(holder) {}

        // A peer removed from the file is removed from the interface.
        let alone = try write(config(a, peer: b, includePeer: false), "a3.conf", in: folder)
        let removal = try lab.run(a.namespace, [Run.lanrage, "wg", "apply", a.interface, alone, "--backend", "uapi"])
        #expect(removal.status == 0 && removal.output.contains("1 peer(s) removed"), "\(removal.output)")
        #expect((try show(lab, a)["peers"] as? [[String: Any]])?.isEmpty == true)

        // Deleting the interface stops wireguard-go and removes its socket.
        for side in [a, b] {
            let deleted = try lab.run(side.namespace, [Run.lanrage, "wg", "delete", side.interface, "--backend", "uapi"])
            #expect(deleted.status == 0, "\(deleted.error)")
        }
        #expect(Lab.waitUntil(seconds: 5) { !FileManager.default.fileExists(atPath: "/var/run/wireguard/\(a.interface).sock") })
        a.interface = ""; b.interface = ""
    }
}
