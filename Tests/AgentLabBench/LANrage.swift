import Foundation
import LabSupport
import Net

/// LANrage: `lanrage control` on the STUN host (192.0.2.1:3478, alternate 192.0.2.2:3479), `lanrage relay`
/// on a relay host at 192.0.2.20 (service port 4000), and one `lanrage agent` per node, on
/// wireguard-go (UAPI) listening on 51820. Overlay 100.64.0.0/16: node i is 100.64.1.(i+1).
struct LANrage: Implementation {
    /// The `lanrage` executable (the release build in `make lab-bench`).
    let binary: String
    var name: String { "lanrage" }
    var key: String { "lanrage" }
    var mapsPorts: Bool { true }
    static let relay = IPv4Address(192, 0, 2, 20)

    func unavailability() -> String? {
        let help = try? LabSupport.run([binary, "agent", "--help"])
        return help == nil ? "\(binary) has no agent command" : nil
    }

    func deploy(in lab: Lab, size: Int) throws -> any Deployment {
        let party = LANrageParty(binary: binary, directory: lab.directory.appendingPathComponent("lanrage"), lab: lab)
        try FileManager.default.createDirectory(at: party.directory, withIntermediateDirectories: true)
        let relaySecret = try party.writeSecret("relay.secret")
        try party.createAuthorityAndServerKey()
        let relayHost = try lab.addHost("relay", address: Self.relay)
        try lab.spawn(in: relayHost, [binary, "relay", "--listen", "\(Self.relay)", "--ports", "4000-4200", "--secret-file", relaySecret],
                      log: "relay.log")
        try relayHost.waitForUDPListener(Endpoint(.v4(Self.relay), 4000))
        try lab.spawn(in: lab.stunHost, [binary, "control", "--listen", "\(Lab.stunPrimary):3478", "--alternate", "\(Lab.stunAlternate):3479",
                                         "--key", party.path("server.key"), "--state", party.path("state"), "--party", "bench=\(party.authority)",
                                         "--relay", "\(Self.relay):4000", "--relay-secret-file", relaySecret], log: "control.log")
        try lab.stunHost.waitForUDPListener(Endpoint(.v4(Lab.stunAlternate), 3479))
        return party
    }
}

final class LANrageParty: Deployment {
    let binary: String
    let directory: URL
    /// Each node's namespace and WireGuard interface.
    private var interfaces: [Int: (Namespace, String)] = [:]
    /// Interface names are global (UAPI sockets): they carry the lab's number.
    private let interfacePrefix: String

    init(binary: String, directory: URL, lab: Lab) {
        self.binary = binary
        self.directory = directory
        interfacePrefix = "w" + lab.prefix.dropFirst(2)
    }

    func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    /// The party authority's public key and the control server's, once made.
    private(set) var authority = "", serverKey = ""

    /// Makes the party's authority key and the control server's key, as an administrator does.
    func createAuthorityAndServerKey() throws {
        try LabSupport.run([binary, "ca", "genkey", "--output", path("authority.key")])
        authority = try LabSupport.run(["sh", "-c", "\(binary) ca pubkey < \(path("authority.key"))"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try LabSupport.run([binary, "genkey", "--output", path("server.key")])
        serverKey = try LabSupport.run(["sh", "-c", "\(binary) pubkey < \(path("server.key"))"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes 32 random bytes, base64, with mode 0600; returns the path.
    func writeSecret(_ file: String) throws -> String {
        let secret = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        guard FileManager.default.createFile(atPath: path(file), contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw BenchFailure(description: "cannot write \(path(file))")
        }
        return path(file)
    }

    func overlayAddress(_ index: Int) -> IPv4Address { IPv4Address(100, 64, 1, UInt8(index + 1)) }

    func command(forNode index: Int, in namespace: Namespace) throws -> [String] {
        let interface = "\(interfacePrefix)-\(index)"
        interfaces[index] = (namespace, interface)
        try LabSupport.run([binary, "genkey", "--output", path("node\(index).key")])
        let publicKey = try LabSupport.run(["sh", "-c", "\(binary) pubkey < \(path("node\(index).key"))"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try LabSupport.run([binary, "ca", "sign", "--key", path("authority.key"), "--party", "bench", "--member", publicKey,
                            "--address", "\(overlayAddress(index))/32", "--output", path("node\(index).cert")])
        let config = """
            [Interface]
            PrivateKeyFile = \(path("node\(index).key"))
            ListenPort = 51820
            Name = \(interface)
            [Party]
            Control = \(Lab.stunPrimary):3478
            ControlKey = \(serverKey)
            Name = bench
            Authority = \(authority)
            Certificate = \(path("node\(index).cert"))
            [Agent]
            Backend = uapi
            StatusSocket = \(path("node\(index).sock"))

            """
        try config.write(toFile: path("node\(index).conf"), atomically: true, encoding: .utf8)
        let level = ProcessInfo.processInfo.environment["LANRAGE_LAB_LOG_LEVEL"] ?? "info"
        return ["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", binary, "agent", "--config", path("node\(index).conf"), "--log-level", level]
    }

    /// Direct once the peer's path is (a liveness poll saw WireGuard's handshake on the pinned address),
    /// or while it is in the `direct` state: WireGuard already sends to the pinned address then.
    func isDirect(node index: Int) throws -> Bool? {
        let output = try LabSupport.run([binary, "status", "--socket", path("node\(index).sock"), "--json"], allowFailure: true)
        let status = (try? JSONSerialization.jsonObject(with: Data(output.utf8))) as? [String: Any]
        let peer = (status?["peers"] as? [[String: Any]])?.first
        return peer?["path"] as? String == "direct" || peer?["state"] as? String == "direct"
    }

    func dataPlaneProcess(node index: Int) -> pid_t? {
        interfaces[index].flatMap { Lab.wireguardGo(serving: $0.1) }
    }

    func cleanUp() { removeWireGuardLinks(Array(interfaces.values)) }
}
