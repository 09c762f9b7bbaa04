import Testing
import Net
@testable import WireGuard

@Suite struct ConfigurationTests {
    let privateKey = Key.generatePrivate()
    let peerKey = Key.generatePrivate().publicKey

    var good: String {
        """
        [Interface]
        PrivateKey = \(privateKey.base64)   # trailing comment
        ListenPort = 51820
        Address = 100.64.0.1/24, 2001:db8::1/64
        DNS = 192.0.2.53

        [Peer]
        PublicKey = \(peerKey.base64)
        Endpoint = [2001:db8::2]:51820
        AllowedIPs = 100.64.0.2/32,100.64.5.0/24
        PersistentKeepalive = 25
        """
    }

    @Test func parsesAWgQuickFile() throws {
        let config = try Configuration(parsing: good, file: "wg0.conf")
        #expect(config.privateKey == privateKey)
        #expect(config.listenPort == 51820)
        #expect(config.addresses == [IPPrefix("100.64.0.1/24")!, IPPrefix("2001:db8::1/64")!])
        #expect(config.ignored == ["DNS"])
        #expect(config.peers.count == 1)
        #expect(config.peers[0].publicKey == peerKey)
        #expect(config.peers[0].endpoint == Endpoint("[2001:db8::2]:51820"))
        #expect(config.peers[0].allowedIPs.count == 2)
        #expect(config.peers[0].persistentKeepalive == 25)
    }

    @Test(arguments: [
        ("ListenPort = 51820", "ListenPort = 70000", 3, "ListenPort"),
        ("AllowedIPs = 100.64.0.2/32,100.64.5.0/24", "AllowedIPs = 100.64.0.2/33", 10, "AllowedIPs"),
        ("Endpoint = [2001:db8::2]:51820", "Endpoint = vpn.example:51820", 9, "host names"),
        ("PersistentKeepalive = 25", "PersistentKeepalive = often", 11, "PersistentKeepalive"),
        ("[Peer]", "[Peers]", 7, "unknown section"),
        ("DNS = 192.0.2.53", "Colour = blue", 5, "unknown key 'Colour'"),
        ("ListenPort = 51820", "ListenPort 51820", 3, "expected 'Key = Value'"),
    ])
    func badLinesNameFileAndLine(_ replace: String, _ with: String, _ line: Int, _ message: String) {
        let text = good.replacingOccurrences(of: replace, with: with)
        #expect { try Configuration(parsing: text, file: "wg0.conf") } throws: { error in
            guard let error = error as? WireGuardError else { return false }
            return error.kind == .invalidConfig && error.message.hasPrefix("wg0.conf:\(line):") && error.message.contains(message)
        }
    }

    @Test func badKeysAndStructure() {
        let badPrivate = good.replacingOccurrences(of: privateKey.base64, with: String(privateKey.base64.dropLast(2)) + "==")
        #expect { try Configuration(parsing: badPrivate, file: "f") } throws: { ($0 as! WireGuardError).message.hasPrefix("f:2: PrivateKey") }
        #expect { try Configuration(parsing: "[Peer]\nPublicKey = \(peerKey.base64)\n", file: "f") } throws: {
            ($0 as! WireGuardError).message == "f: no [Interface] section"
        }
        #expect { try Configuration(parsing: good + "\n[Peer]\nPublicKey = \(peerKey.base64)\n", file: "f") } throws: {
            ($0 as! WireGuardError).message.contains("duplicate peer")
        }
        #expect { try Configuration(parsing: good + "\n[Peer]\nAllowedIPs = 100.64.9.9/32\n", file: "f") } throws: {
            ($0 as! WireGuardError).message.hasPrefix("f:12: [Peer] without PublicKey")
        }
        #expect { try Configuration(parsing: "[Interface]\nListenPort = 1\n", file: "f") } throws: {
            ($0 as! WireGuardError).message.hasPrefix("f:1: [Interface] without PrivateKey")
        }
    }

    @Test func planIsEmptyWhenNothingChangedAndRemovesMissingPeers() throws {
        let config = try Configuration(parsing: good, file: "f")
        let fresh = ApplyPlan(configuration: config, current: nil)
        #expect(fresh.createInterface && fresh.addedPeers == [peerKey] && fresh.change.privateKey == privateKey)
        // The device as the backend would report it after applying.
        let peer = Peer(publicKey: peerKey, endpoint: Endpoint("[2001:db8::2]:51820"), persistentKeepalive: 25,
                        allowedIPs: [IPPrefix("100.64.0.2/32")!, IPPrefix("100.64.5.0/24")!], rxBytes: 10, txBytes: 20)
        let stranger = Peer(publicKey: Key.generatePrivate().publicKey)
        var device = Device(name: "wg0", privateKey: privateKey, publicKey: privateKey.publicKey, listenPort: 51820, peers: [peer])
        let same = ApplyPlan(configuration: config, current: device)
        #expect(!same.createInterface && same.change.isEmpty)
        device.peers.append(stranger)
        device.peers[0].endpoint = Endpoint("198.51.100.1:1")
        let plan = ApplyPlan(configuration: config, current: device)
        #expect(plan.removedPeers == [stranger.publicKey] && plan.updatedPeers == [peerKey])
        #expect(plan.change.peers.count == 2)
        #expect(plan.change.peers[0].endpoint == Endpoint("[2001:db8::2]:51820") && plan.change.peers[0].updateOnly)
        #expect(plan.change.peers[0].allowedIPs.isEmpty && !plan.change.peers[0].replaceAllowedIPs)
        #expect(plan.change.peers[1].remove)
    }

    @Test func reportHidesSecretsAndFormatsLikeWg() {
        let psk = Key.generatePreshared()
        let device = Device(name: "wg0", privateKey: privateKey, publicKey: privateKey.publicKey, listenPort: 51820,
                            peers: [Peer(publicKey: peerKey, presharedKey: psk, endpoint: Endpoint("192.0.2.2:51820"),
                                         persistentKeepalive: 25, allowedIPs: [IPPrefix("100.64.0.2/32")!],
                                         lastHandshake: Timestamp(seconds: 1000), rxBytes: 92, txBytes: 1_288_490_189)])
        let text = DeviceReport.text(device, now: 1065)
        #expect(!text.contains(privateKey.base64) && !text.contains(psk.base64))
        #expect(text.contains("  private key: (hidden)\n") && text.contains("  preshared key: (hidden)\n"))
        #expect(text.contains("  latest handshake: 1 minute, 5 seconds ago\n"))
        #expect(text.contains("  transfer: 92 B received, 1.20 GiB sent\n"))
        #expect(text.contains("  persistent keepalive: every 25 seconds\n"))
        #expect(DeviceReport.bytes(1536) == "1.50 KiB")
    }
}
