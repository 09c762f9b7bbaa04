import Foundation
import LabSupport
import Net
import Rendezvous
import Time

/// The NAT lab with `lanrage relay` on the STUN host and two clients behind symmetric NATs that may
/// reach each other only through it (forwarding between the sites is dropped in the `inet` router).
/// Each client allocates its side with its own token, latches it from its WireGuard port (51820)
/// with an authenticated latch, and runs `wireguard-go` (configured through LANrage's own UAPI
/// backend, `lanrage wg apply`) with its relay port as the peer endpoint.
final class RelayedPairLab {
    static let relayAddress = Lab.stunPrimary  // 192.0.2.1
    static let servicePort: UInt16 = 40_000
    static let wireGuardPort: UInt16 = 51820

    let lab: Lab
    private(set) var sites: [Site] = []
    let interfaces: [String]
    let key: [UInt8]
    let relay: Process
    let service = Endpoint(.v4(RelayedPairLab.relayAddress), RelayedPairLab.servicePort)
    let privateKeys: [String]
    let publicKeys: [String]
    /// The pair's allocation id, and when the tokens expire.
    let pair: [UInt8]
    let expiry = WallClock.unixSeconds() + 60
    private var log: URL { lab.directory.appendingPathComponent("relay.log") }

    init(idleTimeout: Int = 120) throws {
        lab = try Lab()
        // wireguard-go's UAPI sockets share one directory across namespaces: names unique per lab.
        let tag = "lc\(getpid() % 100_000)-\(lab.prefix.split(separator: "-").last ?? "")"
        interfaces = [tag + "a", tag + "b"]
        do {
            sites.append(try lab.addSite(.symmetric, verify: false))
            sites.append(try lab.addSite(.symmetric, verify: false))
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
            key = Keys.relayKey(secret: Array(secret.utf8))
            relay = try lab.spawn(in: lab.stunHost, [Products.lanrage, "relay", "--listen", "\(Self.relayAddress)",
                                                     "--ports", "\(Self.servicePort)-\(Self.servicePort + 9)",
                                                     "--secret-file", secretFile.path, "--idle-timeout", "\(idleTimeout)"], log: "relay.log")
            try lab.stunHost.waitForUDPListener(service)
            privateKeys = try [0, 1].map { _ in try Self.lanrage(["genkey"]) }
            publicKeys = try privateKeys.map { try Self.lanrage(["pubkey"], input: $0 + "\n") }
            let members = publicKeys.map { MemberKey(Array(Data(base64Encoded: $0)!))! }
            pair = Keys.pairID(party: 1, members[0], members[1])
        } catch {
            lab.shutdown()
            throw error
        }
    }

    static func lanrage(_ arguments: [String], input: String? = nil) throws -> String {
        try LabSupport.run([Products.lanrage] + arguments, input: input).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func relayLog() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// The token of site `index`'s side, naming the site's public address.
    func token(_ index: Int) -> [UInt8] {
        RelayToken(side: UInt8(index), address: .v4(sites[index].publicAddress), expiresAt: expiry, partyID: 1, pairID: pair).encoded(key: key)
    }

    /// Site `index` allocates its side with its token: the grant, or nil.
    func allocate(_ index: Int) throws -> RelayAllocator.Grant? {
        let socket = try sites[index].client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        let bytes = token(index)
        return RelayAllocator.allocate(token: bytes, replyKey: Keys.relayReplyKey(relayKey: key, token: bytes), service: service, socket: socket)
    }

    /// The latch of site `index`'s side at `port`, numbered `counter`.
    func latch(_ index: Int, port: UInt16, counter: UInt64) -> [UInt8] {
        RelayMessage.latch(port: port, counter: counter).encoded(key: Keys.relayReplyKey(relayKey: key, token: token(index)))
    }

    /// Sends `bytes` from site `index`'s WireGuard port (before `wireguard-go` owns it): the NAT maps
    /// it as it maps WireGuard's own datagrams to the same destination.
    func sendFromWireGuardPort(_ index: Int, _ bytes: [UInt8], to destination: Endpoint) throws {
        let socket = try sites[index].client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), Self.wireGuardPort))
        try socket.send(bytes, to: destination)
    }

    /// Starts site `index`'s WireGuard interface (100.64.0.index+1) with `endpoint` as its peer's endpoint.
    func startWireGuard(_ index: Int, endpoint: Endpoint) throws {
        let other = 1 - index
        let config = """
            [Interface]
            PrivateKey = \(privateKeys[index])
            ListenPort = \(Self.wireGuardPort)
            Address = 100.64.0.\(index + 1)/24

            [Peer]
            PublicKey = \(publicKeys[other])
            Endpoint = \(endpoint)
            AllowedIPs = 100.64.0.\(other + 1)/32
            PersistentKeepalive = 1

            """
        let file = lab.directory.appendingPathComponent("wg\(index).conf")
        try config.write(to: file, atomically: true, encoding: .utf8)
        chmod(file.path, 0o600)
        try sites[index].client.run([Products.lanrage, "wg", "apply", interfaces[index], file.path, "--backend", "uapi"])
    }

    /// Allocates both sides, latches them from their WireGuard ports and starts WireGuard: the relay
    /// ports of side 0 and side 1.
    func relayedTunnel() throws -> [Endpoint] {
        var relayPorts: [Endpoint] = []
        for index in 0..<2 {
            guard let grant = try allocate(index), grant.status == .granted else {
                throw CommandFailure(command: ["allocate"], status: 1, output: "side \(index) not granted; relay log: \(relayLog())")
            }
            relayPorts.append(grant.endpoint)
            try sendFromWireGuardPort(index, latch(index, port: grant.endpoint.port, counter: 1), to: grant.endpoint)
        }
        for index in 0..<2 { try startWireGuard(index, endpoint: relayPorts[index]) }
        return relayPorts
    }

    /// Pings `count` times from site `index` to the other site's overlay address: the received count.
    func ping(from index: Int, count: Int) -> Int {
        let output = (try? sites[index].client.run(["ping", "-c", "\(count)", "-i", "0.2", "-W", "2", "100.64.0.\(2 - index)"],
                                                    allowFailure: true)) ?? ""
        guard let range = output.range(of: #"\d+ received"#, options: .regularExpression) else { return 0 }
        return Int(output[range].split(separator: " ")[0]) ?? 0
    }

    /// The relay's counters and allocation lines (SIGHUP): the log from the first line they add.
    func counters() -> String {
        let before = relayLog().count
        kill(relay.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline, !String(relayLog().dropFirst(before)).contains("msg=counters") { usleep(50_000) }
        return String(relayLog().dropFirst(before))
    }

    /// Deletes the interfaces (their wireguard-go exits) and the lab.
    func shutdown() {
        for (site, name) in zip(sites, interfaces) { _ = try? site.client.run(["ip", "link", "del", name], allowFailure: true) }
        lab.shutdown()
    }
}
