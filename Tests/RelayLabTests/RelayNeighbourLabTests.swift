import Foundation
import LabSupport
import Net
import Rendezvous
import Testing

/// A neighbour on the member's public address — another customer behind the same carrier-grade
/// NAT, here a socket in the site's NAT router bound to its public address — sends into the
/// member's allocation port from another port: WireGuard-like datagrams, a forged latch, and the
/// member's own latch replayed. It must receive none of the traffic for the member, and the
/// relayed tunnel keeps working.
@Suite(.serialized, .enabled(if: Lab.isAvailable && FileManager.default.isExecutableFile(atPath: "/usr/bin/wireguard-go"),
                             "needs root and wireguard-go"))
struct RelayNeighbourLabTests {
    @Test func aNeighbourOnTheSameAddressReceivesNothingAndTheTunnelKeepsWorking() throws {
        let lab = try RelayedPairLab()
        defer { lab.shutdown() }
        let site = lab.sites[0]
        let relayPorts = try lab.relayedTunnel()
        var crossed = false
        for _ in 0..<15 where !crossed { crossed = lab.ping(from: 0, count: 1) == 1 }
        try #require(crossed, "no ping through the relay; relay log: \(lab.relayLog())")

        let neighbour = try site.router.udpSocket(binding: Endpoint(.v4(site.publicAddress), 0))
        let keepalive: [UInt8] = [4, 0, 0, 0] + [UInt8](repeating: 0, count: 28)
        let initiation: [UInt8] = [1, 0, 0, 0] + [UInt8](repeating: 0x5A, count: 144)
        var forged = lab.latch(0, port: relayPorts[0].port, counter: 1 << 62)
        forged[forged.count - 1] ^= 1
        let replayed = lab.latch(0, port: relayPorts[0].port, counter: 1)
        for datagram in [keepalive, initiation, forged, replayed, keepalive] { try neighbour.send(datagram, to: relayPorts[0]) }

        // Traffic for the member (site 0) both ways while the neighbour listens: pings from site 1,
        // and WireGuard's keepalives every second.
        #expect(lab.ping(from: 1, count: 10) >= 9, "the tunnel stopped; relay log: \(lab.relayLog())")
        for datagram in [keepalive, replayed] { try neighbour.send(datagram, to: relayPorts[0]) }
        #expect(lab.ping(from: 0, count: 10) >= 9, "the tunnel stopped; relay log: \(lab.relayLog())")
        var buffer = [UInt8](repeating: 0, count: 2048)
        var received = 0
        while (try? neighbour.receive(into: &buffer)) ?? nil != nil { received += 1 }
        #expect(received == 0, "the neighbour received \(received) datagrams meant for the member")

        // The relay dropped the neighbour's datagrams and refused its latches, on the member's side.
        let counters = lab.counters()
        let allocation = counters.split(separator: "\n").first { $0.contains("msg=allocation") }.map(String.init) ?? ""
        #expect(allocation.contains("latched=\(site.publicAddress):"), "\(counters)")
        #expect(allocation.contains("refused_latches=3,0"), "\(counters)")
        #expect(!allocation.contains("drops=0,"), "\(counters)")
    }
}
