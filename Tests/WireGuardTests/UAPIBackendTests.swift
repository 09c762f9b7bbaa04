import Foundation
import Net
import Testing
@testable import WireGuard

/// The backend protocol's single operations against a real wireguard-go, from the library (no CLI):
/// every field set is read back over UAPI and checked with `wg` too.
@Suite(.serialized, .enabled(if: Lab.isRoot && UAPIBackend.findInPath("wireguard-go") != nil, "needs root and wireguard-go"))
struct UAPIBackendTests {
    @Test func everyOperationIsReadBack() throws {
        Lab.removeStale()
        let lab = Lab(tag: "k")
        defer { lab.tearDown() }
        let ns = try lab.namespace("a")
        let name = lab.prefix + "w0"
        let backend = UAPIBackend()
        let privateKey = Key.generatePrivate()
        let peerA = Key.generatePrivate().publicKey, peerB = Key.generatePrivate().publicKey
        let psk = Key.generatePreshared()

        try InNamespace.run(ns) {
            try backend.createInterface(named: name)
            #expect { try backend.createInterface(named: name) } throws: { ($0 as? WireGuardError)?.kind == .exists }
            #expect(try backend.interfaceNames().contains(name))
            try backend.configure(name, DeviceChange(privateKey: privateKey))
            try backend.configure(name, DeviceChange(listenPort: 51830))
            try backend.configure(name, DeviceChange(fwmark: 0x42))
            try backend.setPeer(name, PeerChange(publicKey: peerA, presharedKey: psk, endpoint: Endpoint("[2001:db8::9]:51820"),
                                                 persistentKeepalive: 21, allowedIPs: [IPPrefix("100.64.3.0/24")!]))
            try backend.setPeer(name, PeerChange(publicKey: peerB, endpoint: Endpoint("198.51.100.3:9"),
                                                 allowedIPs: [IPPrefix("100.64.4.4/32")!, IPPrefix("2001:db8:4::/48")!]))
            var device = try backend.device(named: name)
            #expect(device.privateKey == privateKey && device.publicKey == privateKey.publicKey)
            #expect(device.listenPort == 51830 && device.fwmark == 0x42)
            #expect(device.peers.count == 2)
            let a = try #require(device.peer(peerA))
            #expect(a.presharedKey == psk && a.endpoint == Endpoint("[2001:db8::9]:51820") && a.persistentKeepalive == 21)
            #expect(a.allowedIPs == [IPPrefix("100.64.3.0/24")!])
            #expect(Set(try #require(device.peer(peerB)).allowedIPs) == [IPPrefix("100.64.4.4/32")!, IPPrefix("2001:db8:4::/48")!])

            // Update: add an allowed IP, then replace them; clear the preshared key; keepalive off.
            try backend.setPeer(name, PeerChange(publicKey: peerA, updateOnly: true, allowedIPs: [IPPrefix("100.64.5.0/24")!]))
            #expect(Set(try backend.device(named: name).peer(peerA)!.allowedIPs) == [IPPrefix("100.64.3.0/24")!, IPPrefix("100.64.5.0/24")!])
            try backend.setPeer(name, PeerChange(publicKey: peerA, updateOnly: true, presharedKey: Key(bytes: [UInt8](repeating: 0, count: 32)),
                                                 persistentKeepalive: 0, replaceAllowedIPs: true, allowedIPs: [IPPrefix("100.64.6.0/24")!]))
            device = try backend.device(named: name)
            let updated = try #require(device.peer(peerA))
            #expect(updated.allowedIPs == [IPPrefix("100.64.6.0/24")!] && updated.presharedKey == nil && updated.persistentKeepalive == 0)
            // update_only never creates.
            try backend.setPeer(name, PeerChange(publicKey: Key.generatePrivate().publicKey, updateOnly: true))
            #expect(try backend.device(named: name).peers.count == 2)

            // Remove.
            try backend.removePeer(name, peerB)
            #expect(try backend.device(named: name).peers.map(\.publicKey) == [peerA])

            // Overlay side through the same protocol.
            try backend.setAddresses(name, [IPPrefix("100.64.6.1/24")!])
            try backend.setLinkUp(name, true)
            try backend.addRoute(name, IPPrefix("100.64.7.0/24")!)
            #expect(try RouteNetlink.isUp(name) && RouteNetlink.addresses(name) == [IPPrefix("100.64.6.1/24")!])
        }
        // wg agrees.
        let dump = try lab.run(ns, ["wg", "show", name, "dump"]).output.split(separator: "\n")
        #expect(dump.count == 2 && dump[0].hasPrefix(privateKey.base64) && dump[1].hasPrefix(peerA.base64))
        #expect(try Run.checked(["ip", "-n", ns, "route", "show", "dev", name]).contains("100.64.7.0/24"))

        try InNamespace.run(ns) {
            try backend.deleteInterface(named: name)
            #expect { try backend.device(named: name) } throws: { ($0 as? WireGuardError)?.kind == .notFound }
        }
        #expect(!FileManager.default.fileExists(atPath: backend.socketPath(name)))
    }
}
