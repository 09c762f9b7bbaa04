import DNS
import EventLoop
import Net
import Output
import Testing
import Time

/// The resolver on a real event loop, asking name servers that are UDP sockets on loopback.
@Suite struct ResolverTests {
    /// A name server on 127.0.0.1: answers each question with `reply` (nil: silence).
    final class NameServer {
        let socket: UDPSocket
        var questions = 0
        var reply: ([UInt8]) -> [UInt8]?

        init(loop: EventLoop, reply: @escaping ([UInt8]) -> [UInt8]?) throws {
            socket = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
            self.reply = reply
            try loop.register(socket.descriptor) { [unowned self] in
                var buffer = [UInt8](repeating: 0, count: 512)
                while let (count, from) = try? self.socket.receive(into: &buffer) {
                    self.questions += 1
                    if let answer = self.reply(Array(buffer[..<count])) { _ = try? self.socket.send(answer, to: from) }
                }
            }
        }

        var endpoint: Endpoint { socket.local }

        static func address(_ octets: [UInt8]) -> ([UInt8]) -> [UInt8]? {
            { query in DNSAnswers.answer(to: query, records: [.init(owner: DNSAnswers.questionName, type: 1, ttl: 42, data: octets)]) }
        }
    }

    /// Runs `loop` until `resolve` has called back (at most 5 s) and returns the outcome.
    static func lookup(_ name: String, on loop: EventLoop, with resolver: Resolver) throws -> Resolver.Outcome? {
        var outcome: Resolver.Outcome?
        resolver.resolve(name) { outcome = $0; loop.stop() }
        if outcome == nil { try loop.run(until: SystemClock().now + 5_000_000_000) }
        return outcome
    }

    static func configuration(_ servers: [Endpoint], hosts: String = "") -> ResolverConfiguration {
        var configuration = ResolverConfiguration()
        configuration.nameServers = servers
        configuration.timeout = .milliseconds(100)
        configuration.attempts = 2
        configuration.parse(hosts: Array(hosts.utf8))
        return configuration
    }

    @Test func aNameServersAnswerGivesTheAddresses() throws {
        let loop = try EventLoop()
        let server = try NameServer(loop: loop, reply: NameServer.address([192, 0, 2, 7]))
        let resolver = Resolver(loop: loop, clock: SystemClock()) { Self.configuration([server.endpoint]) }
        let outcome = try #require(try Self.lookup("control.example.net", on: loop, with: resolver))
        let found = try outcome.get()
        #expect(found.addresses == [.v4(IPv4Address(192, 0, 2, 7))] && found.ttl == .seconds(42))
    }

    @Test func aSilentServerIsPassedForTheNext() throws {
        let loop = try EventLoop()
        let silent = try NameServer(loop: loop) { _ in nil }
        let server = try NameServer(loop: loop, reply: NameServer.address([192, 0, 2, 8]))
        let resolver = Resolver(loop: loop, clock: SystemClock()) { Self.configuration([silent.endpoint, server.endpoint]) }
        let found = try #require(try Self.lookup("control.example.net", on: loop, with: resolver)).get()
        #expect(found.addresses == [.v4(IPv4Address(192, 0, 2, 8))])
        #expect(silent.questions == 1 && server.questions == 1)
    }

    @Test func answersThatAreNotOursAreIgnored() throws {
        let loop = try EventLoop()
        // First a guess at the ID, then the right answer; and an answer from a server not asked.
        let stranger = try NameServer(loop: loop) { _ in nil }
        let server = try NameServer(loop: loop) { query in
            let id = UInt16(query[0]) << 8 | UInt16(query[1])
            return DNSAnswers.answer(to: query, records: [.init(owner: DNSAnswers.questionName, type: 1, data: [203, 0, 113, 66])], id: id &+ 1)
        }
        let resolver = Resolver(loop: loop, clock: SystemClock()) { Self.configuration([server.endpoint]) }
        var outcome: Resolver.Outcome?
        resolver.resolve("control.example.net") { outcome = $0; loop.stop() }
        try loop.run(until: SystemClock().now + 50_000_000)
        #expect(outcome == nil && server.questions == 1)
        server.reply = NameServer.address([192, 0, 2, 9])
        try loop.run(until: SystemClock().now + 5_000_000_000)
        _ = stranger
        #expect(try outcome?.get().addresses == [.v4(IPv4Address(192, 0, 2, 9))])
        #expect(server.questions == 2, "asked again after its timeout")
    }

    @Test func noAnswerFromAnyServerIsReportedAfterEveryRound() throws {
        let loop = try EventLoop()
        let first = try NameServer(loop: loop) { _ in nil }, second = try NameServer(loop: loop) { _ in nil }
        let resolver = Resolver(loop: loop, clock: SystemClock()) { Self.configuration([first.endpoint, second.endpoint]) }
        let outcome = try #require(try Self.lookup("control.example.net", on: loop, with: resolver))
        guard case .failure(.unanswered(let servers)) = outcome else { Issue.record("\(outcome)"); return }
        #expect(servers == [first.endpoint, second.endpoint])
        #expect(first.questions == 2 && second.questions == 2)
    }

    @Test func noSuchNameIsFinal() throws {
        let loop = try EventLoop()
        let server = try NameServer(loop: loop) { DNSAnswers.answer(to: $0, rcode: 3) }
        let resolver = Resolver(loop: loop, clock: SystemClock()) { Self.configuration([server.endpoint]) }
        let outcome = try #require(try Self.lookup("control.example.net", on: loop, with: resolver))
        guard case .failure(.answered(.noSuchName, let from)) = outcome else { Issue.record("\(outcome)"); return }
        #expect(from == server.endpoint)
        #expect(server.questions == 1)
    }

    @Test func theHostsFileAnswersWithoutAQuestion() throws {
        let loop = try EventLoop()
        let server = try NameServer(loop: loop, reply: NameServer.address([192, 0, 2, 7]))
        let resolver = Resolver(loop: loop, clock: SystemClock()) { Self.configuration([server.endpoint], hosts: "198.51.100.3 control.example.net") }
        let found = try #require(try Self.lookup("control.example.net", on: loop, with: resolver)).get()
        #expect(found.addresses == [.v4(IPv4Address(198, 51, 100, 3))] && server.questions == 0)
    }

    /// A server name with no IPv4 address (A: none) is given its IPv6 one (AAAA): two questions.
    @Test func aServerNameWithoutIPv4GetsItsIPv6Address() throws {
        let loop = try EventLoop()
        let v6 = try #require(IPv6Address("2001:db8::7"))
        let server = try NameServer(loop: loop) { query in
            let type = UInt16(query[query.count - 4]) << 8 | UInt16(query[query.count - 3])
            return DNSAnswers.answer(to: query, records: type == 28 ? [.init(owner: DNSAnswers.questionName, type: 28, ttl: 42, data: v6.bytes)] : [])
        }
        let clock = SystemClock()
        let resolver = Resolver(loop: loop, clock: clock) { Self.configuration([server.endpoint]) }
        let alarms = Alarms(clock: clock)
        loop.addTimers(alarms)
        let names = ServerNames(resolver: resolver, alarms: alarms, logger: Logger(label: "test"))
        var failures: [String] = []
        names.onResolved = { _, _ in loop.stop() }
        names.onFailed = { failures.append("\($1)"); loop.stop() }
        names.resolve("control.example.net")
        try loop.run(until: clock.now + 5_000_000_000)
        #expect(failures.isEmpty, "\(failures)")
        #expect(names.endpoint(try #require(ServerAddress("control.example.net:3478"))) == Endpoint(.v6(v6), 3478))
        #expect(server.questions == 2, "A, then AAAA")
    }
}
