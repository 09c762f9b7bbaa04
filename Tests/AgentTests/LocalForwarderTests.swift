import Net
import Testing
@testable import Agent
import Time

/// The forwarder of a fan port, over real UDP sockets on loopback: WireGuard's datagrams leave
/// from the fan port toward the peer, the peer's come back to WireGuard from the forwarder's
/// loopback socket, and nobody else's get through either way.
struct LocalForwarderTests {
    static let loopback = Endpoint("127.0.0.1:0")!

    /// The first datagram on `socket` within `wait` (or `nil`), after `pump` moved what is queued.
    static func next(on socket: UDPSocket, within wait: Duration = .seconds(2), pump: () -> Void) throws -> PortDatagram? {
        let deadline = MonotonicTime.now() + wait
        while MonotonicTime.now() < deadline {
            pump()
            if let datagram = try socket.receive() { return datagram }
            _ = try Readiness.readable([socket.descriptor], timeout: .milliseconds(20))
        }
        return nil
    }

    @Test func carriesBothWaysAndOnlyBetweenWireGuardAndThePeer() throws {
        let wireGuard = try UDPSocket(binding: Self.loopback)
        let peer = try UDPSocket(binding: Self.loopback)
        let stranger = try UDPSocket(binding: Self.loopback)
        let fanPort = try UDPSocket(binding: Self.loopback)
        let forwarder = try LocalForwarder(outside: fanPort, remote: peer.local, wireGuardPort: wireGuard.port)

        try wireGuard.send([1, 2, 3], to: forwarder.inside.local)
        let out = try Self.next(on: peer) { forwarder.insideReadable() }
        #expect(out?.payload == [1, 2, 3])
        #expect(out?.source == fanPort.local, "it leaves from the fan port")

        try peer.send([4, 5], to: fanPort.local)
        let back = try Self.next(on: wireGuard) { forwarder.outsideReadable() }
        #expect(back?.payload == [4, 5])
        #expect(back?.source == forwarder.inside.local, "WireGuard sees its endpoint for the peer")

        // A stranger writing to either side is dropped.
        try stranger.send([6], to: fanPort.local)
        try stranger.send([7], to: forwarder.inside.local)
        #expect(try Self.next(on: wireGuard, within: .milliseconds(300)) { forwarder.outsideReadable() } == nil)
        #expect(try Self.next(on: peer, within: .milliseconds(300)) { forwarder.insideReadable() } == nil)
        #expect(forwarder.toPeer == 1 && forwarder.fromPeer == 1)
    }
}
