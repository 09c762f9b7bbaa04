#if canImport(Glibc)
import Glibc
#endif
import LabSupport
import Net
import Testing
@testable import Punch

/// Two members punch each other over real raw sockets on loopback, each next to a socket that
/// owns its "WireGuard" port; a third party's forged ACK changes nothing.
@Suite(.enabled(if: geteuid() == 0, "raw sockets need CAP_NET_RAW: run as root"))
struct PunchOverRawSocketsTests {
    struct Side {
        let owner: UDPSocket
        let socket: RawPortSocket
        var session: PunchSession

        mutating func run(_ effects: [PunchSession.Effect]) throws {
            for effect in effects { if case .send(let bytes, let to) = effect { try socket.send(bytes, to: to) } }
        }

        mutating func poll() throws {
            while let datagram = try socket.receive() { try run(session.receive(datagram.payload, from: datagram.source)) }
        }
    }

    @Test func bothSidesPinEachOthersWireGuardPort() throws {
        let alice = Member(), bob = Member()
        let aliceOwner = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let bobOwner = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        var a = Side(owner: aliceOwner, socket: try RawPortSocket(port: aliceOwner.local.port),
                     session: PunchSession(key: alice.pairKey(with: bob), session: 42, candidates: [bobOwner.local]))
        var b = Side(owner: bobOwner, socket: try RawPortSocket(port: bobOwner.local.port),
                     session: PunchSession(key: bob.pairKey(with: alice), session: 42, candidates: [aliceOwner.local]))

        // A third party on the same host sends a forged ACK first.
        let mallory = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let forgedKey = PairKey(localPrivateKey: Member().privateKey, localPublicKey: bob.publicKey, remotePublicKey: alice.publicKey)!
        try mallory.send(PunchMessage(kind: .ack, sender: forgedKey.local, receiver: forgedKey.remote, session: 42,
                                      nonce: PunchMessage.randomNonce()).encoded(with: forgedKey), to: aliceOwner.local)

        for round in 0..<200 where a.session.pinned == nil || b.session.pinned == nil {
            if round % 10 == 0 { try a.run(a.session.burst()); try b.run(b.session.burst()) }
            usleep(2000)
            try a.poll()
            try b.poll()
        }
        #expect(a.session.pinned == bobOwner.local)
        #expect(b.session.pinned == aliceOwner.local)
        #expect(a.session.refused[.badMAC] == 1, "the forged ACK was seen and refused")
    }
}
