import Control
import Foundation
import LabSupport
import Net
import Rendezvous
import Testing

/// A real WireGuard tunnel through `lanrage relay`: two clients behind symmetric NATs in network
/// namespaces (the NAT lab), forwarding between the sites dropped in the `inet` router, so the relay
/// is their only path. Each side allocates its port with its token; two `wireguard-go` interfaces,
/// configured through LANrage's own UAPI backend (`lanrage wg apply`), use the relay ports as their
/// peer endpoints, and a ping crosses. A forged token gets no allocation; the idle allocation expires.
@Suite(.serialized, .enabled(if: Lab.isAvailable && FileManager.default.isExecutableFile(atPath: "/usr/bin/wireguard-go"),
                             "needs root and wireguard-go"))
struct RelayTunnelLabTests {
    static let relayAddress = Lab.stunPrimary  // 192.0.2.1
    static let servicePort: UInt16 = 40_000

    func lanrage(_ arguments: [String], input: String? = nil) throws -> String {
        try LabSupport.run([Products.lanrage] + arguments, input: input).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func waitFor(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    @Test func aPingCrossesARelayedTunnelAndABadTokenGetsNothing() throws {
        let lab = try Lab()
        let tag = "lc\(getpid() % 100_000)"
        let interfaces = [tag + "a", tag + "b"]
        var sites: [Site] = []
        defer {
            for (site, name) in zip(sites, interfaces) { _ = try? site.client.run(["ip", "link", "del", name], allowFailure: true) }
            lab.shutdown()
        }
        sites.append(try lab.addSite(.symmetric, verify: false))
        sites.append(try lab.addSite(.symmetric, verify: false))
        // The sites may not reach each other except through the relay.
        try lab.inet.run(["nft", "-f", "-"], input: """
            table ip lcisolate {
              chain forward { type filter hook forward priority -10; policy accept;
                ip saddr 198.51.100.0/24 ip daddr 198.51.100.0/24 drop
                ip saddr 203.0.113.0/24 ip daddr 203.0.113.0/24 drop
              }
            }

            """)

        let secretFile = lab.directory.appendingPathComponent("relay.secret")
        let secret = "relay secret \(UInt64.random(in: 0...UInt64.max))"
        try secret.write(to: secretFile, atomically: true, encoding: .utf8)
        chmod(secretFile.path, 0o600)
        let relay = try lab.spawn(in: lab.stunHost, [Products.lanrage, "relay", "--listen", "\(Self.relayAddress)",
                                                     "--ports", "\(Self.servicePort)-\(Self.servicePort + 9)",
                                                     "--secret-file", secretFile.path, "--idle-timeout", "2"], log: "relay.log")
        let service = Endpoint(.v4(Self.relayAddress), Self.servicePort)
        try lab.stunHost.waitForUDPListener(service)
        let log = lab.directory.appendingPathComponent("relay.log")
        func relayLog() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        let key = Keys.relayKey(secret: Array(secret.utf8))
        let privateKeys = try [0, 1].map { _ in try lanrage(["genkey"]) }
        let publicKeys = try privateKeys.map { try lanrage(["pubkey"], input: $0 + "\n") }
        let members = publicKeys.map { MemberKey(Array(Data(base64Encoded: $0)!))! }
        let pair = Keys.pairID(party: 1, members[0], members[1])
        let expiry = UnixTime.seconds() + 60

        // A forged token (another secret) gets no answer, and so no port to send to.
        let probe = try sites[0].client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        let forged = RelayToken(side: 0, address: .v4(sites[0].publicAddress), expiresAt: expiry, partyID: 1, pairID: pair)
            .encoded(key: Keys.relayKey(secret: Array("guessed".utf8)))
        #expect(RelayAllocator.allocate(token: forged, replyKey: Keys.relayReplyKey(relayKey: key, token: forged), service: service,
                                        socket: probe, timeout: .milliseconds(800)) == nil)

        // Each side allocates with its own token, naming its public (NAT) address.
        var relayPorts: [Endpoint] = []
        for (index, site) in sites.enumerated() {
            let socket = try site.client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
            let token = RelayToken(side: UInt8(index), address: .v4(site.publicAddress), expiresAt: expiry, partyID: 1, pairID: pair)
            let bytes = token.encoded(key: key)
            let grant = try #require(RelayAllocator.allocate(token: bytes, replyKey: Keys.relayReplyKey(relayKey: key, token: bytes),
                                                             service: service, socket: socket))
            #expect(grant.status == .granted && grant.idleSeconds == 2)
            relayPorts.append(grant.endpoint)
        }
        #expect(relayPorts[0] != relayPorts[1] && relayPorts.allSatisfy { $0.address == .v4(Self.relayAddress) })

        // WireGuard on each side: the relay port is the peer endpoint. Nothing else reaches the other side.
        for index in 0..<2 {
            let other = 1 - index
            let config = """
                [Interface]
                PrivateKey = \(privateKeys[index])
                ListenPort = 51820
                Address = 100.64.0.\(index + 1)/24

                [Peer]
                PublicKey = \(publicKeys[other])
                Endpoint = \(relayPorts[index])
                AllowedIPs = 100.64.0.\(other + 1)/32
                PersistentKeepalive = 1

                """
            let file = lab.directory.appendingPathComponent("wg\(index).conf")
            try config.write(to: file, atomically: true, encoding: .utf8)
            chmod(file.path, 0o600)
            try sites[index].client.run([Products.lanrage, "wg", "apply", interfaces[index], file.path, "--backend", "uapi"])
        }
        let crossed = try waitFor(15) {
            (try? sites[0].client.run(["ping", "-c", "1", "-W", "1", "100.64.0.2"])) != nil
        }
        #expect(crossed, "no ping through the relay; relay log: \(relayLog())")
        if crossed {
            #expect(try sites[1].client.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "100.64.0.1"]).contains("3 received"))
        }

        // The relay's counters: the forged token was refused, datagrams were forwarded both ways.
        kill(relay.processIdentifier, SIGHUP)
        #expect(waitFor(3) { relayLog().contains("msg=counters") })
        let counters = relayLog()
        // (The allocator retried the forged request every 300 ms: each try was refused.)
        #expect(counters.contains("unauthenticated=") && !counters.contains("unauthenticated=0"), "\(counters)")
        #expect(counters.contains("granted=2") && counters.contains("allocations=1"), "\(counters)")
        #expect(!counters.contains("forwarded_packets=0 "), "\(counters)")
        // The allocation's own line: both sides latched at their NAT's public address, packets both ways.
        #expect(counters.contains("msg=allocation"), "\(counters)")
        #expect(counters.contains("latched=\(sites[0].publicAddress):") && counters.contains(",\(sites[1].publicAddress):"), "\(counters)")

        // Traffic stops: the allocation expires after its idle timeout and its ports are freed.
        for (site, name) in zip(sites, interfaces) { try site.client.run(["ip", "link", "del", name]) }
        #expect(waitFor(8) { relayLog().contains("msg=expired") }, "allocation did not expire: \(relayLog())")
        try lab.stunHost.run(["true"])
        let listening = try lab.stunHost.run("ss", "-Hunl")
        #expect(!listening.contains(relayPorts[0].description) && !listening.contains(relayPorts[1].description))
        #expect(listening.contains(service.description))
    }
}
