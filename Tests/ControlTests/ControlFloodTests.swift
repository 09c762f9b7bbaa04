import Control
import EventLoop
import Foundation
import LabSupport
import Net
import Rendezvous
import Testing
import Time

/// A flood on the control server's socket (STUN binding requests, which are answered and not rate
/// limited, faster than the server can answer them): the socket never empties, and the server's
/// timers still fire on time — a silent member expires, and another timer on the same loop keeps
/// its beat.
@Suite(.serialized) struct ControlFloodTests {
    static let localhost = IPAddress.v4(IPv4Address(127, 0, 0, 1))
    static let party = TestParty()

    @Test func aFloodedSocketDoesNotStopTheExpiryTimer() throws {
        var configuration = ControlCore.Configuration()
        configuration.heartbeat = .milliseconds(300)
        configuration.memberTimeout = .seconds(1)
        let loop = try EventLoop()
        let clock = SystemClock()
        let core = ControlCore(configuration: configuration, privateKey: Self.party.serverPrivate)
        core.addParty(name: "lan", authority: Self.party.authority.publicKey)
        let server = try ControlServer(listen: [Endpoint(Self.localhost, 0)], alternate: nil, core: core, store: nil, loop: loop)
        func spin(upTo seconds: Double, until condition: () -> Bool) throws -> Bool {
            let deadline = clock.now + Int64(seconds * 1e9)
            while clock.now < deadline {
                if condition() { return true }
                try loop.run(until: min(deadline, clock.now + 5_000_000))
            }
            return condition()
        }

        // One member registers, then falls silent: it is due to expire a second later.
        let member = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let joining = Self.party.member(7)
        let register = ControlMessage(partyID: Self.party.id, timestampMillis: WallClock.unixMillis(), nonce: 1, sender: joining.key,
                                      body: .register(cookie: [UInt8](repeating: 0, count: ControlNotice.cookieCount), nat: .open,
                                                      candidates: [Candidate(.local, Endpoint("203.0.113.7:51820")!)], certificate: joining.certificate))
        try member.send(register.encoded(key: Self.party.controlKey(joining)), to: server.sockets[0].local)
        #expect(try spin(upTo: 2) { core.counters.registrations == 1 })
        let registered = clock.now

        let request: [UInt8] = [0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 5, count: 12)
        let flood = LoopbackFlood(to: server.sockets[0].local, from: Self.localhost, payload: request, threads: 4, seconds: 2)
        usleep(100_000) // a backlog first
        var beats: [Nanoseconds] = []
        loop.addTimers(Ticker(every: .milliseconds(50), clock: clock) { beats.append(clock.now) })
        let started = clock.now
        let expired = try spin(upTo: 1.8) { core.counters.expiredMembers == 1 }
        let expiredAfter = Double(clock.now - registered) / 1e9
        let gaps = zip(beats.dropFirst(), beats).map { Double($0 - $1) / 1e9 }
        let answeredDuringFlood = server.stunAnswered
        let sent = flood.wait()

        #expect(answeredDuringFlood > 1000, "the flood reached the server: \(answeredDuringFlood) of \(sent) answered")
        #expect(expired && expiredAfter < 1.8, "the silent member expired \(expiredAfter) s after registering (timeout 1 s)")
        #expect(!beats.isEmpty && Double(beats[0] - started) / 1e9 < 0.5, "the first beat came late or never")
        #expect((gaps.max() ?? 0) < 0.5, "a 50 ms timer went unfired for \(gaps.max() ?? 0) s during the flood")
    }
}
