import Foundation
import LabSupport
import Net
import Testing

/// Interop with real peers: LANrage's client against coturn's STUN server, and Debian's classic
/// `stun` client against `lanrage stun-server`, each checked against what the lab's NAT really is.
@Suite(.enabled(if: Lab.isAvailable, "the NAT lab needs root (ip netns, nftables)")) struct InteropLabTests {
    /// Starts coturn as a plain STUN server on both STUN-host addresses (RFC 5780: alternate port 3479).
    static func startCoturn(in lab: Lab) throws {
        let pidFile = lab.directory.appendingPathComponent("turnserver.pid").path
        try lab.spawn(in: lab.stunHost, [
            "turnserver", "-n", "--no-auth", "--stun-only", "--no-tls", "--no-dtls", "--no-cli",
            "-L", "\(Lab.stunPrimary)", "-L", "\(Lab.stunAlternate)", "-p", "3478", "--alt-listening-port", "3479",
            "--pidfile", pidFile, "--log-file", "stdout", "--simple-log", "--verbose",
        ], log: "turnserver.log")
        try lab.stunHost.waitForUDPListener(Endpoint(.v4(Lab.stunAlternate), 3479))
    }

    @Test(arguments: NATBehaviour.allCases)
    func lanrageNetcheckAgainstCoturn(_ behaviour: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        try Self.startCoturn(in: lab)
        let site = try lab.addSite(behaviour)
        let result = try netcheck(in: site, ["--stun", "\(Lab.stunPrimary):3478", "--port", "51820"])
        print("coturn/\(behaviour): \(result["nat_type"] ?? "-") \(result["mapping"] ?? "-")/\(result["filtering"] ?? "-") software=\(((result["servers"] as? [[String: Any]])?.first?["software"]) ?? "-")")
        #expect(result["nat_type"] as? String == behaviour.rawValue)
        #expect(result["mapping"] as? String == behaviour.expected.mapping)
        #expect(result["filtering"] as? String == behaviour.expected.filtering)
        #expect(result["complete"] as? Bool == true)
    }

    @Test(arguments: NATBehaviour.allCases)
    func classicStunClientAgainstLanrageServer(_ behaviour: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        try startSTUNServer(in: lab)
        let site = try lab.addSite(behaviour)
        let output = try site.client.run(["stun", "\(Lab.stunPrimary)"], allowFailure: true)
        let verdict = output.split(separator: "\n").first { $0.hasPrefix("Primary:") }.map(String.init) ?? output
        print("stun-client/\(behaviour): \(verdict)")
        let expected: String
        switch behaviour {
        case .open: expected = "Primary: Open"
        case .fullCone: expected = "Primary: Independent Mapping, Independent Filter"
        case .restrictedCone: expected = "Primary: Independent Mapping, Address Dependent Filter"
        case .portRestrictedCone: expected = "Primary: Independent Mapping, Port Dependent Filter"
        case .symmetric: expected = "Primary: Dependent Mapping"
        }
        #expect(verdict.hasPrefix(expected), "\(output)")
    }
}
