import Net
import Testing
@testable import WireGuard

@Suite struct UAPIProtocolTests {
    @Test func setRequestPutsWhatCanFailBeforeWhatChangesState() {
        let key = Key.generatePrivate(), peer = Key.generatePrivate().publicKey
        let text = UAPIProtocol.setRequest(DeviceChange(privateKey: key, listenPort: 51820, fwmark: 7, replacePeers: true, peers: [
            PeerChange(publicKey: peer, endpoint: Endpoint("[2001:db8::1]:51820"), persistentKeepalive: 0,
                       replaceAllowedIPs: true, allowedIPs: [IPPrefix("100.64.0.2/32")!]),
            PeerChange(publicKey: key.publicKey, remove: true, allowedIPs: [IPPrefix("100.64.0.9/32")!]),
        ]))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(text.hasSuffix("\n\n"))
        #expect(Array(lines.prefix(5)) == ["set=1", "fwmark=7", "listen_port=51820", "replace_peers=true", "private_key=\(key.hex)"])
        #expect(lines.contains("endpoint=[2001:db8::1]:51820") && lines.contains("persistent_keepalive_interval=0"))
        #expect(lines.contains("replace_allowed_ips=true") && lines.contains("allowed_ip=100.64.0.2/32"))
        // A removed peer carries nothing but its key and remove=true.
        #expect(lines.suffix(4) == ["public_key=\(key.publicKey.hex)", "remove=true", "", ""])
    }

    @Test func getReplyIsParsedWithPeersAndCounters() throws {
        let key = Key.generatePrivate(), p1 = Key.generatePrivate().publicKey, p2 = Key.generatePrivate().publicKey, psk = Key.generatePreshared()
        let reply = """
            private_key=\(key.hex)
            listen_port=51820
            fwmark=3
            public_key=\(p1.hex)
            preshared_key=\(psk.hex)
            protocol_version=1
            endpoint=192.0.2.2:51821
            last_handshake_time_sec=1700000000
            last_handshake_time_nsec=5
            tx_bytes=532
            rx_bytes=476
            persistent_keepalive_interval=25
            allowed_ip=100.64.0.2/32
            allowed_ip=2001:db8::/64
            public_key=\(p2.hex)
            preshared_key=\(String(repeating: "0", count: 64))
            last_handshake_time_sec=0
            last_handshake_time_nsec=0
            tx_bytes=0
            rx_bytes=0
            persistent_keepalive_interval=0
            errno=0


            """
        let device = try UAPIProtocol.parseGet(reply, name: "wg0")
        #expect(device.privateKey == key && device.publicKey == key.publicKey && device.listenPort == 51820 && device.fwmark == 3)
        #expect(device.peers.count == 2)
        let first = device.peers[0]
        #expect(first.publicKey == p1 && first.presharedKey == psk && first.endpoint == Endpoint("192.0.2.2:51821"))
        #expect(first.lastHandshake == Timestamp(seconds: 1_700_000_000, nanoseconds: 5) && first.rxBytes == 476 && first.txBytes == 532)
        #expect(first.allowedIPs == [IPPrefix("100.64.0.2/32")!, IPPrefix("2001:db8::/64")!] && first.persistentKeepalive == 25)
        #expect(device.peers[1].presharedKey == nil && device.peers[1].lastHandshake == nil && device.peers[1].allowedIPs.isEmpty)
    }

    @Test func errorsAreClear() {
        #expect { try UAPIProtocol.parseGet("errno=-19\n\n", name: "wg0") } throws: { ($0 as! WireGuardError).message.contains("errno=-19") }
        #expect { try UAPIProtocol.parseGet("listen_port=1\n", name: "wg0") } throws: { ($0 as! WireGuardError).message.contains("without an errno= line") }
        #expect { try UAPIProtocol.parseGet("listen_port=x\nerrno=0\n\n", name: "wg0") } throws: { ($0 as! WireGuardError).message.contains("malformed line: listen_port") }
        #expect { try UAPIProtocol.checkSetReply("errno=-98\n\n", name: "wg0") } throws: {
            let message = ($0 as! WireGuardError).message
            return message.contains("Address already in use") && message.contains("ListenPort")
        }
        #expect(throws: Never.self) { try UAPIProtocol.checkSetReply("errno=0\n\n", name: "wg0") }
    }
}
