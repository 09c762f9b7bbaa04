import LabSupport
import Testing
@testable import Punch

extension Member {
    func pairKey(with other: Member) -> PairKey {
        PairKey(localPrivateKey: privateKey, localPublicKey: publicKey, remotePublicKey: other.publicKey)!
    }
}

@Suite struct PunchMessageTests {
    let alice = Member(), bob = Member(), mallory = Member()

    @Test func bothSidesDeriveTheSameKeyAndAMessageRoundTrips() throws {
        let aliceKey = alice.pairKey(with: bob), bobKey = bob.pairKey(with: alice)
        let nonce = PunchMessage.randomNonce()
        let punch = PunchMessage(kind: .punch, sender: aliceKey.local, receiver: aliceKey.remote, session: 0x0102_0304_0506_0708, nonce: nonce)
        let wire = punch.encoded(with: aliceKey)
        #expect(wire.starts(with: Array("LANRAGE_PUNCH\0".utf8)))
        #expect(wire.count == 14 + 1 + 8 + 8 + 8 + 16 + 16)
        #expect(PunchMessage.sender(of: wire) == KeyID(publicKey: alice.publicKey))
        #expect(try PunchMessage.decode(wire, key: bobKey) == punch)

        let ack = PunchMessage(kind: .ack, sender: bobKey.local, receiver: bobKey.remote, session: punch.session, nonce: nonce)
        let ackWire = ack.encoded(with: bobKey)
        #expect(ackWire.starts(with: Array("LANRAGE_PUNCH_ACK\0".utf8)))
        #expect(try PunchMessage.decode(ackWire, key: aliceKey) == ack)
    }

    @Test func aThirdPartyCannotForgeAMessage() {
        let bobKey = bob.pairKey(with: alice)
        // Mallory knows both public keys but not their private keys: her own pair key is different.
        let forgedKey = PairKey(localPrivateKey: mallory.privateKey, localPublicKey: alice.publicKey, remotePublicKey: bob.publicKey)!
        let forged = PunchMessage(kind: .ack, sender: KeyID(publicKey: alice.publicKey), receiver: KeyID(publicKey: bob.publicKey),
                                  session: 7, nonce: PunchMessage.randomNonce()).encoded(with: forgedKey)
        #expect(throws: PunchMessageError.badMAC) { try PunchMessage.decode(forged, key: bobKey) }
    }

    @Test func everyFlippedBitIsCaught() throws {
        let aliceKey = alice.pairKey(with: bob), bobKey = bob.pairKey(with: alice)
        let wire = PunchMessage(kind: .punch, sender: aliceKey.local, receiver: aliceKey.remote, session: 1,
                                nonce: PunchMessage.randomNonce()).encoded(with: aliceKey)
        for index in 14..<wire.count {
            var tampered = wire
            tampered[index] ^= 0x01
            #expect(throws: PunchMessageError.self) { try PunchMessage.decode(tampered, key: bobKey) }
        }
    }

    @Test func aMessageForSomeoneElseIsRefused() {
        let aliceToBob = alice.pairKey(with: bob)
        let wire = PunchMessage(kind: .punch, sender: aliceToBob.local, receiver: aliceToBob.remote, session: 1,
                                nonce: PunchMessage.randomNonce()).encoded(with: aliceToBob)
        #expect(throws: PunchMessageError.unknownSender) { try PunchMessage.decode(wire, key: mallory.pairKey(with: bob)) }
        #expect(throws: PunchMessageError.wrongReceiver) { try PunchMessage.decode(wire, key: mallory.pairKey(with: alice)) }
    }

    @Test func malformedInputIsATypedErrorNeverATrap() {
        let aliceKey = alice.pairKey(with: bob), bobKey = bob.pairKey(with: alice)
        let wire = PunchMessage(kind: .ack, sender: aliceKey.local, receiver: aliceKey.remote, session: 9,
                                nonce: PunchMessage.randomNonce()).encoded(with: aliceKey)
        for length in 0..<wire.count {
            #expect(throws: PunchMessageError.self) { try PunchMessage.decode(Array(wire[..<length]), key: bobKey) }
            _ = PunchMessage.sender(of: Array(wire[..<length]))
        }
        #expect(throws: PunchMessageError.malformed) { try PunchMessage.decode(wire + [0], key: bobKey) }
        #expect(throws: PunchMessageError.notAPunchMessage) { try PunchMessage.decode(Array("hello".utf8), key: bobKey) }
        var future = wire
        future[18] = 2
        #expect(throws: PunchMessageError.unsupportedVersion(2)) { try PunchMessage.decode(future, key: bobKey) }
    }

    @Test func aLowOrderPublicKeyGivesNoPairKey() {
        #expect(PairKey(localPrivateKey: alice.privateKey, localPublicKey: alice.publicKey,
                        remotePublicKey: [UInt8](repeating: 0, count: 32)) == nil)
    }
}
