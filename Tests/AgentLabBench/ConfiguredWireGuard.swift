import Foundation
import LabSupport
import Net

/// The floor under any agent on wireguard-go: two wireguard-go told everything in advance (keys,
/// each other's endpoint, addresses), no control server, no discovery, no punch. Each node is one
/// bash script: start `wireguard-go -f`, wait for its UAPI socket, `wg setconf`, one `ip -batch`.
/// Only where both sites are open (the peer's endpoint is its client address, known before it starts).
/// Overlay 100.66.0.0/16: node i is 100.66.1.(i+1).
struct ConfiguredWireGuard: Implementation {
    var name: String { "wireguard-go (configured in advance)" }
    var key: String { "wireguard-go" }

    func unavailability() -> String? {
        ["/usr/bin/wireguard-go", "/usr/bin/wg", "/bin/bash"].first { !FileManager.default.isExecutableFile(atPath: $0) }
            .map { "\($0) is missing" }
    }

    func supports(_ a: SiteKind, _ b: SiteKind) -> Bool { a.behaviour == .open && b.behaviour == .open }

    func deploy(in lab: Lab, size: Int) throws -> any Deployment {
        guard lab.sites.count == size, lab.sites.allSatisfy({ $0.behaviour == .open }) else {
            throw BenchFailure(description: "wireguard-go configured in advance needs one open site per node")
        }
        let party = ConfiguredWireGuardParty(directory: lab.directory.appendingPathComponent("wireguard-go"),
                                             interfacePrefix: "g" + lab.prefix.dropFirst(2), endpoints: lab.sites.map(\.clientAddress))
        try FileManager.default.createDirectory(at: party.directory, withIntermediateDirectories: true)
        party.keys = try (0..<size).map { _ in
            let secret = try LabSupport.run(["wg", "genkey"]).trimmingCharacters(in: .whitespacesAndNewlines)
            return (secret, try LabSupport.run(["wg", "pubkey"], input: secret).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return party
    }
}

final class ConfiguredWireGuardParty: Deployment {
    let directory: URL
    let interfacePrefix: String
    /// Each node's address on the internet: its open site's client address.
    let endpoints: [IPv4Address]
    var keys: [(secret: String, public: String)] = []
    private var interfaces: [Int: (Namespace, String)] = [:]

    init(directory: URL, interfacePrefix: String, endpoints: [IPv4Address]) {
        self.directory = directory
        self.interfacePrefix = interfacePrefix
        self.endpoints = endpoints
    }

    func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    func overlayAddress(_ index: Int) -> IPv4Address { IPv4Address(100, 66, 1, UInt8(index + 1)) }

    func command(forNode index: Int, in namespace: Namespace) throws -> [String] {
        let interface = "\(interfacePrefix)-\(index)"
        interfaces[index] = (namespace, interface)
        let peers = keys.indices.filter { $0 != index }.map { peer in
            "[Peer]\nPublicKey = \(keys[peer].public)\nEndpoint = \(endpoints[peer]):51820\nAllowedIPs = \(overlayAddress(peer))/32\n"
        }
        try ("[Interface]\nPrivateKey = \(keys[index].secret)\nListenPort = 51820\n" + peers.joined())
            .write(toFile: path("node\(index).conf"), atomically: true, encoding: .utf8)
        try """
            address add \(overlayAddress(index))/16 dev \(interface)
            link set \(interface) up

            """.write(toFile: path("node\(index).ip"), atomically: true, encoding: .utf8)
        // The socket is polled every 0.5 ms for 5 s at most (`read -t` on a pipe nobody writes to).
        try """
            export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1
            wireguard-go -f \(interface) &
            exec 3<> <(:)
            for ((i = 0; i < 10000; i++)); do [[ -S /var/run/wireguard/\(interface).sock ]] && break; read -t 0.0005 -u 3; done
            wg setconf \(interface) \(path("node\(index).conf"))
            ip -batch \(path("node\(index).ip"))
            wait

            """.write(toFile: path("node\(index).sh"), atomically: true, encoding: .utf8)
        return ["/bin/bash", path("node\(index).sh")]
    }

    /// Always: the endpoint is set before the first packet.
    func isDirect(node index: Int) throws -> Bool? { true }

    func dataPlaneProcess(node index: Int) -> pid_t? { nil }

    func cleanUp() { removeWireGuardLinks(Array(interfaces.values)) }
}
