import DNS
import Net
import Testing

@Suite struct DNSMessageTests {
    let query = DNSQuery(id: 0x1234, name: "control.example.net", type: .a)

    @Test func theQueryAsksOneQuestionWithRecursion() {
        let bytes = query.encoded()
        #expect(Array(bytes[0..<12]) == [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[12...]) == DNSAnswers.labels("control.example.net") + [0, 1, 0, 1])
    }

    @Test func addressesOfACompressedAnswerAreRead() throws {
        let answer = DNSAnswers.answer(to: query.encoded(), records: [
            .init(owner: DNSAnswers.questionName, type: 1, ttl: 60, data: [192, 0, 2, 7]),
            .init(owner: DNSAnswers.questionName, type: 1, ttl: 30, data: [192, 0, 2, 8]),
        ])
        let found = try query.addresses(in: answer)
        #expect(found.addresses == [.v4(IPv4Address(192, 0, 2, 7)), .v4(IPv4Address(192, 0, 2, 8))])
        #expect(found.ttl == 30)
    }

    @Test func aCNAMEChainIsFollowedAndOtherOwnersIgnored() throws {
        let target = DNSAnswers.labels("home.dyn.example")
        let answer = DNSAnswers.answer(to: query.encoded(), records: [
            // An address for a name that was not asked: never taken.
            .init(owner: DNSAnswers.labels("evil.example"), type: 1, data: [203, 0, 113, 66]),
            .init(owner: DNSAnswers.questionName, type: 5, ttl: 3600, data: target),
            .init(owner: target, type: 1, ttl: 20, data: [198, 51, 100, 9]),
        ])
        let found = try query.addresses(in: answer)
        #expect(found.addresses == [.v4(IPv4Address(198, 51, 100, 9))])
        #expect(found.ttl == 20)
    }

    @Test func anAAAAQuestionTakesIPv6Records() throws {
        let query6 = DNSQuery(id: 7, name: "control.example.net", type: .aaaa)
        let v6 = IPv6Address("2001:db8::5")!
        let answer = DNSAnswers.answer(to: query6.encoded(), records: [.init(owner: DNSAnswers.questionName, type: 28, data: v6.bytes)])
        #expect(try query6.addresses(in: answer).addresses == [.v6(v6)])
    }

    @Test func answersToOtherQuestionsAreNotOurs() {
        #expect(throws: DNSError.notOurs) { try query.addresses(in: DNSAnswers.answer(to: query.encoded(), id: 0x4321)) }
        let other = DNSQuery(id: 0x1234, name: "other.example.net", type: .a)
        #expect(throws: DNSError.notOurs) { try query.addresses(in: DNSAnswers.answer(to: other.encoded())) }
        // The question itself, not an answer.
        #expect(throws: DNSError.notOurs) { try query.addresses(in: query.encoded()) }
    }

    @Test func negativeAnswersAreNamed() {
        #expect(throws: DNSError.noSuchName) { try query.addresses(in: DNSAnswers.answer(to: query.encoded(), rcode: 3)) }
        #expect(throws: DNSError.serverFailure(2)) { try query.addresses(in: DNSAnswers.answer(to: query.encoded(), rcode: 2)) }
        #expect(throws: DNSError.noAddress) { try query.addresses(in: DNSAnswers.answer(to: query.encoded())) }
        #expect(throws: DNSError.truncated) { try query.addresses(in: DNSAnswers.answer(to: query.encoded(), truncated: true)) }
    }

    @Test func malformedAnswersAreRefusedWithoutATrap() {
        let good = DNSAnswers.answer(to: query.encoded(), records: [.init(owner: DNSAnswers.questionName, type: 1, data: [192, 0, 2, 7])])
        // Every prefix of a good answer.
        for length in 0..<good.count {
            #expect(throws: DNSError.self) { try query.addresses(in: Array(good[..<length])) }
        }
        // A pointer to itself, and one pointing forward.
        var loop = good
        loop[loop.count - 16] = 0xC0
        loop[loop.count - 15] = UInt8(loop.count - 16)
        #expect(throws: DNSError.malformed("a name pointer does not point back")) { try query.addresses(in: loop) }
        // An A record of 5 bytes.
        let odd = DNSAnswers.answer(to: query.encoded(), records: [.init(owner: DNSAnswers.questionName, type: 1, data: [1, 2, 3, 4, 5])])
        #expect(throws: DNSError.malformed("an address record of 5 bytes")) { try query.addresses(in: odd) }
    }

    @Test func aCNAMELoopEndsWithNoAddress() {
        let a = DNSAnswers.labels("a.example"), b = DNSAnswers.labels("b.example")
        let answer = DNSAnswers.answer(to: query.encoded(), records: [
            .init(owner: DNSAnswers.questionName, type: 5, data: a),
            .init(owner: a, type: 5, data: b),
            .init(owner: b, type: 5, data: a),
        ])
        #expect(throws: DNSError.noAddress) { try query.addresses(in: answer) }
    }
}
