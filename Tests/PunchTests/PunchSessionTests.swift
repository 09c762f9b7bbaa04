import LabSupport
import Net
import Testing
@testable import Punch

@Suite struct PunchSessionTests {
    let alice = Member(), bob = Member(), mallory = Member()
    let aliceAddress = Endpoint("192.0.2.10:51820")!, bobAddress = Endpoint("198.51.100.20:40000")!

    func sends(_ effects: [PunchSession.Effect]) -> [(bytes: [UInt8], to: Endpoint)] {
        effects.compactMap { if case .send(let bytes, let to) = $0 { (bytes, to) } else { nil } }
    }

    @Test func aBurstPunchesEveryCandidateInOrder() {
        var session = PunchSession(key: alice.pairKey(with: bob), session: 5,
                                   candidates: [Endpoint("203.0.113.5:51820")!, bobAddress])
        let effects = sends(session.burst())
        #expect(effects.map(\.to) == [Endpoint("203.0.113.5:51820")!, bobAddress])
        #expect(effects.allSatisfy { $0.bytes.starts(with: Array("LANRAGE_PUNCH\0".utf8)) })
    }

    /// A candidate that arrives during the attempt (a port the peer's gateway mapped) is punched from
    /// the next burst on, once.
    @Test func aCandidateAddedDuringTheAttemptIsPunchedToo() {
        let mapped = Endpoint("198.51.100.20:51820")!
        var session = PunchSession(key: alice.pairKey(with: bob), session: 5, candidates: [bobAddress])
        session.add(candidates: [bobAddress, mapped, mapped])
        #expect(sends(session.burst()).map(\.to) == [bobAddress, mapped])
    }

    /// Each side pins only on the ACK of its own PUNCH: a PUNCH, even from a candidate, pins nothing.
    @Test func eachSidePinsOnTheAckOfItsOwnPunch() throws {
        var a = PunchSession(key: alice.pairKey(with: bob), session: 5, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 5, candidates: [aliceAddress])
        let punch = try #require(sends(a.burst()).first)
        let answer = b.receive(punch.bytes, from: aliceAddress)
        #expect(!answer.contains(.pin(aliceAddress)), "a PUNCH pins nothing")
        #expect(sends(answer).map(\.to) == [aliceAddress, aliceAddress], "an ACK, and a PUNCH of Bob's own back")
        let ack = sends(answer)[0], bobsPunch = sends(answer)[1]
        #expect(a.receive(ack.bytes, from: bobAddress) == [.pin(bobAddress)])
        let aliceAnswer = sends(a.receive(bobsPunch.bytes, from: bobAddress))
        #expect(aliceAnswer.count == 1, "pinned already: only the ACK")
        #expect(b.receive(aliceAnswer[0].bytes, from: aliceAddress) == [.pin(aliceAddress)])
        #expect(a.pinned == bobAddress && b.pinned == aliceAddress)
    }

    /// A PUNCH captured and replayed from a third address, twice: answered once, never pinned — the
    /// replayer cannot make this side point WireGuard, or keep sending, where it likes.
    @Test func aReplayedPunchIsAnsweredOnceAndPinsNothing() throws {
        var a = PunchSession(key: alice.pairKey(with: bob), session: 5, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 5, candidates: [aliceAddress])
        let victim = Endpoint("203.0.113.99:5353")!
        let captured = try #require(sends(a.burst()).first)
        let first = b.receive(captured.bytes, from: victim)
        #expect(sends(first).count == 2, "answered, and the new address punched (it may be a symmetric NAT's mapping)")
        #expect(b.receive(captured.bytes, from: victim).isEmpty)
        #expect(b.receive(captured.bytes, from: victim).isEmpty)
        #expect(b.pinned == nil && b.refused[.replayed] == 2)
    }

    @Test func aPunchFromANewAddressIsAnsweredAndPunchedButNotPinned() throws {
        var a = PunchSession(key: alice.pairKey(with: bob), session: 5, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 5, candidates: [aliceAddress])
        let mappedByASymmetricNAT = Endpoint("192.0.2.10:61001")!
        let punch = try #require(sends(a.burst()).first)
        let effects = b.receive(punch.bytes, from: mappedByASymmetricNAT)
        #expect(b.pinned == nil)
        #expect(sends(effects).map(\.to) == [mappedByASymmetricNAT, mappedByASymmetricNAT], "ACK, then our own PUNCH")
        #expect(b.candidates.last == mappedByASymmetricNAT)
        // Alice answers Bob's PUNCH; Bob pins on her ACK, which echoes his nonce.
        let bobsPunch = sends(effects)[1]
        let aliceAnswer = a.receive(bobsPunch.bytes, from: bobAddress)
        let aliceAck = try #require(sends(aliceAnswer).first)
        #expect(b.receive(aliceAck.bytes, from: mappedByASymmetricNAT) == [.pin(mappedByASymmetricNAT)])
    }

    @Test func sidesInDifferentSessionsAnswerEachOtherAndBothPin() throws {
        // Bob missed the announcement of session 7 and punches in one of his own.
        var a = PunchSession(key: alice.pairKey(with: bob), session: 7, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 90_210, candidates: [aliceAddress])
        let alicesPunch = try #require(sends(a.burst()).first)
        let bobsAnswer = b.receive(alicesPunch.bytes, from: aliceAddress)
        #expect(b.pinned == nil, "a PUNCH of another session pins nothing")
        let ackForAlice = try #require(sends(bobsAnswer).first)
        #expect(sends(bobsAnswer).count == 2 && ackForAlice.to == aliceAddress)
        #expect(try PunchMessage.decode(ackForAlice.bytes, key: a.key).session == 7, "answered in Alice's session")
        #expect(a.receive(ackForAlice.bytes, from: bobAddress) == [.pin(bobAddress)])
        let bobsPunch = try #require(sends(b.burst()).first)
        let ackForBob = try #require(sends(a.receive(bobsPunch.bytes, from: bobAddress)).first)
        #expect(b.receive(ackForBob.bytes, from: aliceAddress) == [.pin(aliceAddress)])
        #expect(a.pinned == bobAddress && b.pinned == aliceAddress)
    }

    @Test func aPunchOfAnotherSessionFromASymmetricNATsMappingIsPunchedBack() throws {
        // Bob is behind a symmetric NAT: Alice knows his mapping toward her only from his PUNCH.
        var a = PunchSession(key: alice.pairKey(with: bob), session: 90_210, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 7, candidates: [aliceAddress])
        let mappedByASymmetricNAT = Endpoint("198.51.100.20:61001")!
        let bobsPunch = try #require(sends(b.burst()).first)
        let answer = sends(a.receive(bobsPunch.bytes, from: mappedByASymmetricNAT))
        #expect(a.pinned == nil)
        #expect(answer.map(\.to) == [mappedByASymmetricNAT, mappedByASymmetricNAT], "ACK in Bob's session, then our own PUNCH")
        #expect(b.receive(answer[0].bytes, from: aliceAddress) == [.pin(aliceAddress)])
        // Bob answers Alice's PUNCH (her session) through the same mapping: Alice pins it.
        let ackForAlice = try #require(sends(b.receive(answer[1].bytes, from: aliceAddress)).first)
        #expect(a.receive(ackForAlice.bytes, from: mappedByASymmetricNAT) == [.pin(mappedByASymmetricNAT)])
    }

    /// Alice pinned first and punches on; Bob's PUNCH back is lost: her next PUNCH gets another
    /// one from him, until he pins — at most `punchBackLimit` to one address.
    @Test func aLostPunchBackIsSentAgainOnThePeersNextPunch() throws {
        var a = PunchSession(key: alice.pairKey(with: bob), session: 7, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 7, candidates: [aliceAddress])
        let first = sends(b.receive(try #require(sends(a.burst()).first).bytes, from: aliceAddress))
        #expect(first.count == 2, "ACK, and Bob's PUNCH back (lost)")
        let second = sends(b.receive(try #require(sends(a.burst()).first).bytes, from: aliceAddress))
        #expect(second.count == 2, "Alice's next PUNCH: Bob punches back again")
        let ackForBob = try #require(sends(a.receive(second[1].bytes, from: bobAddress)).first)
        #expect(b.receive(ackForBob.bytes, from: aliceAddress) == [.pin(aliceAddress)])
        #expect(sends(b.receive(try #require(sends(a.burst()).first).bytes, from: aliceAddress)).count == 1, "pinned: the ACK only")

        var c = PunchSession(key: bob.pairKey(with: alice), session: 7, candidates: [aliceAddress])
        let answers = (0..<14).map { _ in sends(c.receive(sends(a.burst())[0].bytes, from: aliceAddress)).count }
        #expect(answers == Array(repeating: 2, count: 10) + Array(repeating: 1, count: 4), "bounded per address")
    }

    @Test func aNewSessionPunchesWhatTheLastOneLearned() throws {
        // Bob, behind a symmetric NAT, punched Alice's session 7 through his mapping toward her.
        var old = PunchSession(key: alice.pairKey(with: bob), session: 7, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 7, candidates: [aliceAddress])
        let mappedByASymmetricNAT = Endpoint("198.51.100.20:61001")!
        let bobsPunch = try #require(sends(b.burst()).first)
        _ = old.receive(bobsPunch.bytes, from: mappedByASymmetricNAT)
        #expect(old.learned == [mappedByASymmetricNAT])
        // An announcement replaces the session: the new one punches the mapping from its first burst,
        // and Bob's answer through it pins.
        var next = PunchSession(key: alice.pairKey(with: bob), session: 8, candidates: [bobAddress], learned: old.learned)
        let burst = sends(next.burst())
        #expect(burst.map(\.to) == [bobAddress, mappedByASymmetricNAT])
        var bobNext = PunchSession(key: bob.pairKey(with: alice), session: 8, candidates: [aliceAddress])
        let ack = try #require(sends(bobNext.receive(burst[1].bytes, from: aliceAddress)).first)
        #expect(next.receive(ack.bytes, from: mappedByASymmetricNAT) == [.pin(mappedByASymmetricNAT)])
        // What is carried over is bounded: the four newest, none twice.
        let mappings = (1...6).map { Endpoint(.v4(IPv4Address(198, 51, 100, 20)), UInt16(61_000 + $0)) }
        let carried = PunchSession(key: alice.pairKey(with: bob), session: 9, candidates: [bobAddress], learned: mappings + [bobAddress])
        #expect(carried.learned == Array(mappings.suffix(4)))
        #expect(carried.candidates == [bobAddress] + mappings.suffix(4))
    }

    @Test func forgedReplayedAndStaleMessagesNeverMoveThePin() throws {
        var a = PunchSession(key: alice.pairKey(with: bob), session: 5, candidates: [bobAddress])
        var b = PunchSession(key: bob.pairKey(with: alice), session: 5, candidates: [aliceAddress])
        let punch = try #require(sends(a.burst()).first)
        let ack = try #require(sends(b.receive(punch.bytes, from: aliceAddress)).first)
        let attacker = Endpoint("203.0.113.66:6666")!

        // Mallory forges an ACK with her own key for Alice: refused, nothing pinned.
        let forgedKey = PairKey(localPrivateKey: mallory.privateKey, localPublicKey: bob.publicKey, remotePublicKey: alice.publicKey)!
        let forged = PunchMessage(kind: .ack, sender: forgedKey.local, receiver: forgedKey.remote, session: 5,
                                  nonce: PunchMessage.randomNonce()).encoded(with: forgedKey)
        #expect(a.receive(forged, from: attacker).isEmpty)
        #expect(a.refused[.badMAC] == 1)
        // A genuine ACK for a nonce Alice never sent (an old session's, replayed): ignored.
        let oldSession = PunchMessage(kind: .ack, sender: b.key.local, receiver: b.key.remote, session: 4, nonce: PunchMessage.randomNonce())
        #expect(a.receive(oldSession.encoded(with: b.key), from: attacker).isEmpty)
        let unknownNonce = PunchMessage(kind: .ack, sender: b.key.local, receiver: b.key.remote, session: 5, nonce: PunchMessage.randomNonce())
        #expect(a.receive(unknownNonce.encoded(with: b.key), from: attacker).isEmpty)
        #expect(a.pinned == nil)

        #expect(a.receive(ack.bytes, from: bobAddress) == [.pin(bobAddress)])
        // The same genuine ACK replayed from elsewhere afterwards does not move the pin.
        #expect(a.receive(ack.bytes, from: attacker).isEmpty)
        #expect(a.pinned == bobAddress)
    }

    @Test func garbageIsCountedNotFatal() {
        var a = PunchSession(key: alice.pairKey(with: bob), session: 5, candidates: [bobAddress])
        #expect(a.receive(Array("LANRAGE_PUNCH".utf8), from: bobAddress).isEmpty)
        #expect(a.receive([], from: bobAddress).isEmpty)
        #expect(a.refused[.malformed] == 1 && a.refused[.notAPunchMessage] == 1)
    }
}
