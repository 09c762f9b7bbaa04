import Foundation
import LabSupport
import Net
import Rendezvous
import Testing

/// A real WireGuard tunnel through `lanrage relay` (see `RelayedPairLab`): two clients behind
/// symmetric NATs, whose only path is the relay, latch their sides from their WireGuard ports and
/// ping across. A forged token gets no allocation; the idle allocation expires.
@Suite(.serialized, .enabled(if: Lab.isAvailable && FileManager.default.isExecutableFile(atPath: "/usr/bin/wireguard-go"),
                             "needs root and wireguard-go"))
struct RelayTunnelLabTests {
    func waitFor(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    @Test func aPingCrossesARelayedTunnelAndABadTokenGetsNothing() throws {
        let lab = try RelayedPairLab(idleTimeout: 2)
        defer { lab.shutdown() }
        let sites = lab.sites

        // A forged token (another secret) gets no answer, and so no port to send to.
        let probe = try sites[0].client.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        let forged = RelayToken(side: 0, address: .v4(sites[0].publicAddress), expiresAt: lab.expiry, partyID: 1, pairID: lab.pair)
            .encoded(key: Keys.relayKey(secret: Array("guessed".utf8)))
        #expect(RelayAllocator.allocate(token: forged, replyKey: Keys.relayReplyKey(relayKey: lab.key, token: forged), service: lab.service,
                                        socket: probe, timeout: .milliseconds(800)) == nil)

        // Each side allocates with its own token, naming its public (NAT) address, and latches its
        // side from its WireGuard port; WireGuard's peer endpoint is the relay port.
        let relayPorts = try lab.relayedTunnel()
        #expect(relayPorts[0] != relayPorts[1] && relayPorts.allSatisfy { $0.address == .v4(RelayedPairLab.relayAddress) })
        let crossed = waitFor(15) { lab.ping(from: 0, count: 1) == 1 }
        #expect(crossed, "no ping through the relay; relay log: \(lab.relayLog())")
        if crossed { #expect(lab.ping(from: 1, count: 3) == 3) }

        // The relay's counters: the forged token was refused, datagrams were forwarded both ways.
        let counters = lab.counters()
        // (The allocator retried the forged request every 300 ms: each try was refused.)
        #expect(counters.contains("unauthenticated=") && !counters.contains("unauthenticated=0"), "\(counters)")
        #expect(counters.contains("granted=2") && counters.contains("allocations=1"), "\(counters)")
        #expect(!counters.contains("forwarded_packets=0 "), "\(counters)")
        // The allocation's own line: both sides latched at their NAT's public address, packets both ways.
        #expect(counters.contains("msg=allocation"), "\(counters)")
        #expect(counters.contains("latched=\(sites[0].publicAddress):") && counters.contains(",\(sites[1].publicAddress):"), "\(counters)")

        // Traffic stops: the allocation expires after its idle timeout and its ports are freed.
        for (site, name) in zip(sites, lab.interfaces) { try site.client.run(["ip", "link", "del", name]) }
        #expect(waitFor(8) { lab.relayLog().contains("msg=expired") }, "allocation did not expire: \(lab.relayLog())")
        let listening = try lab.lab.stunHost.run("ss", "-Hunl")
        #expect(!listening.contains(relayPorts[0].description) && !listening.contains(relayPorts[1].description))
        #expect(listening.contains(lab.service.description))
    }
}
