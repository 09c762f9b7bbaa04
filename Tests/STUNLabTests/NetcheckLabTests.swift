import Foundation
import LabSupport
import Net
import Testing

/// Runs the real `lanrage` binary in the lab: `stun-server` with two addresses on the STUN host,
/// `netcheck` on the client of a site behind each NAT behaviour.
func startSTUNServer(in lab: Lab) throws {
    try lab.spawn(in: lab.stunHost, [Products.lanrage, "stun-server", "--listen", "\(Lab.stunPrimary):3478",
                                     "--alternate", "\(Lab.stunAlternate):3479"], log: "stun-server.log")
    try lab.stunHost.waitForUDPListener(Endpoint(.v4(Lab.stunAlternate), 3479))
}

func netcheck(in site: Site, _ arguments: [String]) throws -> [String: Any] {
    let output = try site.client.run([Products.lanrage, "netcheck", "--json"] + arguments)
    let object = try JSONSerialization.jsonObject(with: Data(output.utf8))
    return try #require(object as? [String: Any], "netcheck printed \(output)")
}

@Suite(.enabled(if: Lab.isAvailable, "the NAT lab needs root (ip netns, nftables)")) struct NetcheckLabTests {
    @Test(arguments: NATBehaviour.allCases)
    func netcheckNamesEachNAT(_ behaviour: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        try startSTUNServer(in: lab)
        let site = try lab.addSite(behaviour)
        let start = Date()
        let result = try netcheck(in: site, ["--stun", "\(Lab.stunPrimary):3478", "--port", "51820"])
        let elapsed = Date().timeIntervalSince(start)
        // Detecting has 3 s in the peer chart; a filtering NAT costs one 2.3 s transaction timeout.
        #expect(elapsed < 4, "netcheck took \(elapsed) s")
        #expect(result["nat_type"] as? String == behaviour.rawValue)
        #expect(result["mapping"] as? String == behaviour.expected.mapping)
        #expect(result["filtering"] as? String == behaviour.expected.filtering)
        #expect(result["complete"] as? Bool == true)
        let publicEndpoint = try #require(result["public_endpoint"] as? String)
        let expectedAddress = behaviour == .open ? site.clientAddress : site.publicAddress
        #expect(publicEndpoint.hasPrefix("\(expectedAddress):"))
        // Linux keeps the source port unless told to randomise (the symmetric NAT is).
        #expect(result["port_preserved"] as? Bool == (behaviour != .symmetric))
        let servers = try #require(result["servers"] as? [[String: Any]])
        let rtt = try #require(servers.first?["rtt_ms"] as? Double)
        #expect(rtt > 0 && rtt < 100)
        print("netcheck \(behaviour): \(result["nat_type"] ?? "-") mapping=\(result["mapping"] ?? "-") filtering=\(result["filtering"] ?? "-") public=\(publicEndpoint) rtt=\(rtt) ms in \(Int(elapsed * 1000)) ms")
    }

    /// Without --stun, netcheck takes the agent configuration's STUN servers (the control server,
    /// which answers STUN) and its ListenPort.
    @Test func theAgentConfigurationGivesTheServersAndPort() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.portRestrictedCone)
        let party = try PartyLab(lab)
        try party.startControl()
        let agent = try party.prepareAgent(in: site.client, index: 1, interface: [])
        let result = try netcheck(in: site, ["--config", agent.configuration.path])
        #expect(result["nat_type"] as? String == NATBehaviour.portRestrictedCone.rawValue, "\(result)")
        #expect(result["local_port"] as? Int == 51820, "the configuration's ListenPort")
        let servers = try #require(result["servers"] as? [[String: Any]])
        #expect(servers.first?["server"] as? String == "\(party.control)")
        let missing = try site.client.spawn([Products.lanrage, "netcheck", "--config", lab.directory.appendingPathComponent("none.conf").path],
                                            output: lab.directory.appendingPathComponent("netcheck-missing.out"))
        missing.waitUntilExit()
        let output = try String(contentsOf: lab.directory.appendingPathComponent("netcheck-missing.out"), encoding: .utf8)
        #expect(missing.terminationStatus == 64 && output.contains("no --stun HOST:PORT given, and the agent configuration cannot be used"),
                "\(output)")
    }

    /// Why a detection run again on the agent's port keeps the filtering of the run before
    /// (`NATReport.keepingEarlier`), and the simulation's routers model it: the first run's
    /// mapping tests sent to the server's other address, the conntrack entry for it lives on, and
    /// the filtering tests of a second run from the same port, moments later, are answered from
    /// there and pass the port-restricted filter.
    @Test func aSecondRunFromThePortFindsTheFilterTheFirstOpened() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        try startSTUNServer(in: lab)
        let site = try lab.addSite(.portRestrictedCone)
        let arguments = ["--stun", "\(Lab.stunPrimary):3478", "--port", "51820"]
        let first = try netcheck(in: site, arguments)
        let second = try netcheck(in: site, arguments)
        #expect(first["filtering"] as? String == "address-and-port-dependent", "\(first)")
        #expect(second["filtering"] as? String == "endpoint-independent" && second["nat_type"] as? String == "full cone", "\(second)")
        print("NETCHECK-RERUN: first \(first["nat_type"] ?? "-"), second from the same port \(second["nat_type"] ?? "-")")
    }

    @Test func noAnswerIsAClearFailureWithinTheConfiguredTime() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.portRestrictedCone)
        let start = Date()
        let process = try site.client.spawn([Products.lanrage, "netcheck", "--stun", "\(Lab.stunPrimary):3478"],
                                            output: lab.directory.appendingPathComponent("netcheck.out"))
        process.waitUntilExit()
        let elapsed = Date().timeIntervalSince(start)
        let output = try String(contentsOf: lab.directory.appendingPathComponent("netcheck.out"), encoding: .utf8)
        #expect(process.terminationStatus == 69)
        #expect(output.contains("no response from 192.0.2.1:3478 after 7 tries"))
        #expect(elapsed >= 2.2 && elapsed < 4, "took \(elapsed) s")
    }

    @Test func garbageAnswersAreNamed() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        // A "server" that answers every datagram with text, from a thread of this process (socat
        // forking a shell per datagram answers too late on a loaded machine).
        nonisolated(unsafe) let server = try lab.stunHost.udpSocket(binding: Endpoint(.v4(Lab.stunPrimary), 3478))
        let stop = StopFlag()
        let responder = Thread {
            while !stop.isSet {
                guard let (_, from) = try? NATProbe.receive(on: server, within: .milliseconds(50)) else { continue }
                _ = try? server.send(Array("garbage-garbage-garbage-garbage".utf8), to: from)
            }
        }
        responder.start()
        defer { stop.set() }
        let site = try lab.addSite(.open)
        let process = try site.client.spawn([Products.lanrage, "netcheck", "--stun", "\(Lab.stunPrimary):3478", "--tries", "3",
                                             "--rto", "300"],
                                            output: lab.directory.appendingPathComponent("garbage.out"))
        process.waitUntilExit()
        let text = try String(contentsOf: lab.directory.appendingPathComponent("garbage.out"), encoding: .utf8)
        #expect(process.terminationStatus == 69)
        #expect(text.contains("no response from 192.0.2.1:3478 after 3 tries (it sent"), "\(text)")
        #expect(text.contains("malformed"))
    }
}

/// Tells a helper thread to stop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
