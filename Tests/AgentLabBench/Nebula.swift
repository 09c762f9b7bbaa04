import Foundation
import LabSupport
import Net

/// Nebula (Debian's `nebula`) as the reference: the lighthouse on the STUN host at 192.0.2.1:4242,
/// nodes on port 4242 of both families (`[::]`: a node tells the lighthouse its IPv6 addresses too)
/// with the lighthouse in `static_host_map`, punchy on (punch and respond, the
/// default delays), a firewall that lets everything through; with relays on, the lighthouse is also
/// the relay every node names. Overlay 100.65.0.0/16: the lighthouse is .0.1, node i is .1.(i+1).
struct Nebula: Implementation {
    let relays: Bool
    var name: String { relays ? "nebula (relays on)" : "nebula (relays off)" }
    var key: String { relays ? "nebula-relays" : "nebula-direct" }
    static let lighthouse = IPv4Address(100, 65, 0, 1)

    func unavailability() -> String? {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/nebula") ? nil : "nebula is not installed (apt-get install nebula)"
    }

    func deploy(in lab: Lab, size: Int) throws -> any Deployment {
        let party = NebulaParty(directory: lab.directory.appendingPathComponent("nebula"), relays: relays)
        try FileManager.default.createDirectory(at: party.directory, withIntermediateDirectories: true)
        try LabSupport.run(["nebula-cert", "ca", "-name", "lanrage-bench", "-out-crt", party.path("ca.crt"), "-out-key", party.path("ca.key")])
        let config = try party.configure("lighthouse", address: Nebula.lighthouse, isLighthouse: true)
        try lab.spawn(in: lab.stunHost, ["nebula", "-config", config], log: "nebula-lighthouse.log")
        // Nebula listens on an IPv6 socket, as [::ffff:192.0.2.1]:4242 in `ss`.
        let deadline = Date().addingTimeInterval(5)
        while try !lab.stunHost.run("ss", "-Hunl").contains("[::ffff:\(Lab.stunPrimary)]:4242") {
            guard Date() < deadline else { throw BenchFailure(description: "the Nebula lighthouse does not listen after 5 s") }
            usleep(20_000)
        }
        return party
    }
}

final class NebulaParty: Deployment {
    let directory: URL
    let relays: Bool

    init(directory: URL, relays: Bool) {
        self.directory = directory
        self.relays = relays
    }

    func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    func overlayAddress(_ index: Int) -> IPv4Address { IPv4Address(100, 65, 1, UInt8(index + 1)) }

    func command(forNode index: Int, in namespace: Namespace) throws -> [String] {
        ["nebula", "-config", try configure("node\(index)", address: overlayAddress(index), isLighthouse: false)]
    }

    func isDirect(node index: Int) throws -> Bool? { nil }
    func dataPlaneProcess(node index: Int) -> pid_t? { nil }
    func cleanUp() {}

    /// Signs a certificate for `name` at `address` and writes its configuration; returns the configuration's path.
    func configure(_ name: String, address: IPv4Address, isLighthouse: Bool) throws -> String {
        try LabSupport.run(["nebula-cert", "sign", "-ca-crt", path("ca.crt"), "-ca-key", path("ca.key"), "-name", name,
                            "-ip", "\(address)/16", "-out-crt", path("\(name).crt"), "-out-key", path("\(name).key")])
        let lighthouse = "\"\(Nebula.lighthouse)\""
        let config = """
            pki:
              ca: \(path("ca.crt"))
              cert: \(path("\(name).crt"))
              key: \(path("\(name).key"))
            static_host_map:
              \(isLighthouse ? "{}" : "\(lighthouse): [\"\(Lab.stunPrimary):4242\"]")
            lighthouse:
              am_lighthouse: \(isLighthouse)
              hosts: [\(isLighthouse ? "" : lighthouse)]
            listen:
              host: \(isLighthouse ? "\(Lab.stunPrimary)" : "\"[::]\"")
              port: 4242
            punchy:
              punch: true
              respond: true
            relay:
              am_relay: \(isLighthouse && relays)
              use_relays: \(relays)
              relays: [\(isLighthouse || !relays ? "" : lighthouse)]
            tun:
              disabled: \(isLighthouse)
              dev: nebula1
            logging:
              level: info
            firewall:
              outbound: [{port: any, proto: any, host: any}]
              inbound: [{port: any, proto: any, host: any}]

            """
        try config.write(toFile: path("\(name).yml"), atomically: true, encoding: .utf8)
        return path("\(name).yml")
    }
}
