import Foundation
import LabSupport
import Net
import Punch
import STUN
import Testing

/// Punching between two sites for every pair of NAT types, on port 51820 owned by `wireguard-go`
/// on both sides: STUN through the raw path, the compatibility table, then the coordinated punch
/// (5 packets 100 ms apart, 2 s ACK timeout, two bursts), with port prediction where the table
/// says so. Each cell records whether a direct path was pinned and how long it took.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct PunchMatrixLabTests {
    static let types: [NATBehaviour] = [.open, .fullCone, .restrictedCone, .portRestrictedCone, .symmetric]
    static let pairs: [(NATBehaviour, NATBehaviour)] = types.indices.flatMap { i in types[i...].map { (types[i], $0) } }

    /// What the compatibility table and RFC 4787 say must happen.
    static func expectation(_ a: NATBehaviour, _ b: NATBehaviour) -> String {
        switch (a, b) {
        case (.symmetric, .symmetric): "relay"
        case (.symmetric, .portRestrictedCone), (.portRestrictedCone, .symmetric): "prediction"
        default: "direct"
        }
    }

    @Test(arguments: pairs)
    func punchBetween(_ a: NATBehaviour, _ b: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let cell = try PunchCell(lab: lab, a: a, b: b)
        let result = try cell.run()
        print("PUNCH-MATRIX \(a) ↔ \(b): plan=\(result.plan.rawValue) result=\(result.summary)")
        switch Self.expectation(a, b) {
        case "relay":
            #expect(result.plan == .relay)
        case "prediction":
            // Random port allocation (the lab's symmetric NAT): a hit is possible, not expected.
            #expect(result.plan == .punchWithPortPrediction)
            #expect(result.elapsed < .seconds(6), "the attempt ends within its bound either way")
        default:
            #expect(result.plan == .punch)
            #expect(result.direct, "\(a) ↔ \(b) must connect directly")
        }
    }

    @Test func aForgedAckFromAThirdHostDoesNotMoveThePin() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let cell = try PunchCell(lab: lab, a: .fullCone, b: .restrictedCone)
        let result = try cell.run()
        #expect(result.direct)
        let pinned = try #require(result.pinnedA)
        // The STUN host (a third party on the internet) forges an ACK with a key of its own.
        let forgedKey = PairKey(localPrivateKey: Member().privateKey, localPublicKey: cell.keyB.publicKey,
                                remotePublicKey: cell.keyA.publicKey)!
        let forged = PunchMessage(kind: .ack, sender: forgedKey.local, receiver: forgedKey.remote,
                                  session: cell.session, nonce: PunchMessage.randomNonce()).encoded(with: forgedKey)
        let attacker = try lab.stunHost.udpSocket(binding: Endpoint("192.0.2.1:51820")!)
        try attacker.send(forged, to: cell.reflexiveA)
        var sideA = cell.sideA!
        let deadline = ContinuousClock.now + .seconds(2)
        while sideA.session.refused[.badMAC, default: 0] == 0, ContinuousClock.now < deadline {
            try sideA.poll()
            usleep(2000)
        }
        #expect(sideA.session.refused[.badMAC] == 1, "the forged ACK reached A and was refused")
        #expect(sideA.session.pinned == pinned)
    }
}
