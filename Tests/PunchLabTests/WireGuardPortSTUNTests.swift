import Foundation
import LabSupport
import Net
import Testing

/// STUN through the raw path while `wireguard-go` owns the port reports the very public endpoint
/// that WireGuard's own traffic then uses.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"), .serialized)
struct WireGuardPortSTUNTests {
    @Test(arguments: [NATBehaviour.portRestrictedCone, .fullCone])
    func netcheckOnTheWireGuardPortSeesWireGuardsMapping(_ behaviour: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(behaviour)
        try lab.spawn(in: lab.stunHost, [Products.lanrage, "stun-server", "--listen", "192.0.2.1:3478",
                                         "--alternate", "192.0.2.2:3479"], log: "stun.log")
        try lab.stunHost.waitForUDPListener(Endpoint("192.0.2.2:3479")!)

        // wireguard-go owns port 51820 in the client's namespace.
        let interface = "lp\(getpid() % 10000)\(behaviour == .fullCone ? "f" : "p")"
        try lab.startWireGuardGo(in: site.client, interface: interface, listenPort: 51820)

        // STUN from the same port, through the raw path.
        let json = try site.client.run(Products.lanrage, "netcheck", "--stun", "192.0.2.1:3478", "--port", "51820", "--json")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let stunSays = try #require((report["public_endpoint"] as? String).flatMap { Endpoint($0) })
        #expect(report["nat_type"] as? String == behaviour.rawValue)

        // WireGuard's own handshake toward a listener outside the NAT shows WireGuard's mapping.
        let listener = try lab.stunHost.udpSocket(binding: Endpoint("192.0.2.1:51999")!)
        let peer = try LabSupport.run(["sh", "-c", "wg genkey | wg pubkey"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try site.client.run("wg", "set", interface, "peer", peer, "endpoint", "192.0.2.1:51999",
                            "allowed-ips", "100.64.0.2/32", "persistent-keepalive", "1")
        let handshake = try #require(try NATProbe.receive(on: listener, within: .seconds(5), buffer: 2048))
        #expect(handshake.1 == stunSays, "WireGuard's traffic leaves from the endpoint STUN reported")
        #expect(stunSays == Endpoint(.v4(site.publicAddress), 51820))
    }
}
