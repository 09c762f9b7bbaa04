import Control
import EventLoop
import LabSupport
import Net
import Relay
import STUN
import Rendezvous
import Testing
import Time

/// The control server and several clients on loopback, in one event loop (one thread, as in the
/// agent): joining, seeing each other's candidates, pushes, punch coordination, relay offers, and
/// what nobody may do: join without a certificate, speak for another member or as the server, replay.
@Suite(.serialized) struct ControlLoopbackTests {
    static let localhost = IPAddress.v4(IPv4Address(127, 0, 0, 1))
    static let party = TestParty()

    final class World {
        let loop: EventLoop
        let clock = SystemClock()
        let core: ControlCore
        let server: ControlServer
        var clients: [ControlClient] = []

        init(configuration: ControlCore.Configuration = ControlCore.Configuration(), relays: [Endpoint] = [],
             relayKey: [UInt8]? = nil, listen: [Endpoint] = [Endpoint(ControlLoopbackTests.localhost, 0)]) throws {
            loop = try EventLoop()
            core = ControlCore(configuration: configuration, privateKey: ControlLoopbackTests.party.serverPrivate, relays: relays,
                               relayKey: relayKey, now: clock.now)
            core.addParty(name: "lan", authority: ControlLoopbackTests.party.authority.publicKey)
            server = try ControlServer(listen: listen, alternate: nil, core: core, store: nil, loop: loop,
                                       clock: clock)
        }

        var endpoint: Endpoint { server.sockets[0].local }

        func client(_ index: Int, member: TestMember? = nil, party: String = "lan", over socket: Int = 0) throws -> ControlClient {
            let member = member ?? ControlLoopbackTests.party.member(index)
            let server = server.sockets[socket].local
            var configuration = ControlLoopbackTests.party.configuration(member, server: server)
            configuration.party = party
            configuration.nat = .portRestrictedCone
            configuration.candidates = [Candidate(.local, Endpoint("203.0.113.\(index):51820")!),
                                        Candidate(.reflexive, Endpoint("198.51.100.\(index):40\(index)00")!)]
            let client = try ControlClient(configuration, privateKey: member.privateKey, loop: loop, clock: clock,
                                           local: Endpoint(server.address, 0))
            clients.append(client)
            return client
        }

        /// Asks `offer`'s relay for an allocation from a new socket of the offer's family (nonce 1)
        /// and runs the loop until the answer, authenticated with the offer's reply key, arrives.
        func allocate(under offer: RelayOffer) throws -> RelayMessage? {
            let socket = try UDPSocket(binding: Endpoint(offer.service.address, 0))
            try socket.send(RelayMessage.allocate(nonce: 1, token: offer.token).encoded(), to: offer.service)
            var buffer = [UInt8](repeating: 0, count: 256)
            var answer: RelayMessage?
            _ = try spin {
                if let (count, _) = try? socket.receive(into: &buffer) {
                    answer = try? buffer.withUnsafeBytes { try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count]), key: offer.replyKey) }
                }
                return answer != nil
            }
            return answer
        }

        func spin(upTo seconds: Double = 3, until condition: () -> Bool) throws -> Bool {
            let deadline = clock.now + Int64(seconds * 1e9)
            while clock.now < deadline {
                if condition() { return true }
                try loop.run(until: min(deadline, clock.now + 5_000_000))
            }
            return condition()
        }
    }

    /// A message from `member`, sealed with the control key of `sealer` (the member's own by default).
    static func message(_ body: ControlMessage.Body, from member: TestMember, sealedBy sealer: TestMember? = nil, nonce: UInt64 = 1,
                        at wall: UInt64 = WallClock.unixMillis()) -> [UInt8] {
        ControlMessage(partyID: party.id, timestampMillis: wall, nonce: nonce, sender: member.key, body: body)
            .encoded(key: party.controlKey(sealer ?? member))
    }

    static let noCookie = [UInt8](repeating: 0, count: ControlNotice.cookieCount)

    /// A server listening on IPv4 and IPv6: members registered over either see each other with
    /// the address the server saw them at, a change crosses from one family to the other, and STUN
    /// answers over IPv6 with the client's IPv6 endpoint.
    @Test func membersOverIPv4AndIPv6MeetOnOneServer() throws {
        let world = try World(listen: [Endpoint(Self.localhost, 0), Endpoint("[::1]:0")!])
        let members = [try world.client(1), try world.client(2, over: 1)]
        #expect(members[1].local.address == IPAddress("::1"))
        for member in members { member.start() }
        #expect(try world.spin { members.allSatisfy { $0.state == .registered && $0.members.count == 1 } })
        for (member, other) in [(members[0], members[1]), (members[1], members[0])] {
            #expect(member.members[other.configuration.key]?.candidates.last == Candidate(.observed, other.local))
        }
        members[1].update(nat: .symmetric, candidates: [])
        #expect(try world.spin { members[0].members[members[1].configuration.key]?.nat == .symmetric }, "pushed from the IPv6 member to the IPv4 one")
        members[0].update(nat: .fullCone, candidates: [])
        #expect(try world.spin { members[1].members[members[0].configuration.key]?.nat == .fullCone }, "and back")

        let stun = try UDPSocket(binding: Endpoint("[::1]:0")!)
        let request = Message(type: .bindingRequest, transactionID: TransactionID(high: 7, low: 7))
        try stun.send(request.encoded(fingerprint: true), to: world.server.sockets[1].local)
        var buffer = [UInt8](repeating: 0, count: 1500)
        var answer: (count: Int, from: Endpoint)?
        #expect(try world.spin { answer = try? stun.receive(into: &buffer); return answer != nil })
        let response = try Message(decoding: Array(buffer[..<(answer?.count ?? 0)]))
        #expect(response.attributes.contains(.xorMappedAddress(stun.local)), "\(response.attributes)")
        for member in members { member.stop() }
    }

    /// A server that never answers: after three register messages a second apart the client backs
    /// off and says so, with the count of unanswered rounds.
    @Test func aSilentServerIsReportedUnanswered() throws {
        let loop = try EventLoop()
        let clock = SystemClock()
        let silent = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let member = Self.party.member(1)
        let client = try ControlClient(Self.party.configuration(member, server: silent.local), privateKey: member.privateKey,
                                       loop: loop, clock: clock, local: Endpoint(Self.localhost, 0))
        var rounds: [Int] = []
        client.onUnanswered = { rounds.append($0) }
        let started = clock.now
        client.start()
        let deadline = started + 5_000_000_000
        while clock.now < deadline, rounds.isEmpty { try loop.run(until: min(deadline, clock.now + 10_000_000)) }
        #expect(rounds == [1] && client.state == .backingOff)
        #expect(clock.now - started >= 2_900_000_000, "three attempts, one second apart, before backing off")
        client.stop()
    }

    /// The system's clocks with the wall clock `offset` milliseconds off.
    final class SkewedClock: TimeSource {
        let system = SystemClock()
        let offset: Int64
        init(offset: Int64) { self.offset = offset }
        var now: Nanoseconds { system.now }
        var wallMilliseconds: Int64 { system.wallMilliseconds + offset }
        var unixMillis: UInt64 { UInt64(clamping: wallMilliseconds) }
        var unixSeconds: UInt64 { unixMillis / 1000 }
    }

    /// A member whose clock is 2 minutes fast: the server refuses its register for the time, and
    /// the member learns by how much the clocks differ (the server's minus its own).
    @Test func aSkewedClockIsRefusedAndMeasured() throws {
        let world = try World()
        let member = Self.party.member(1)
        let client = try ControlClient(Self.party.configuration(member, server: world.endpoint), privateKey: member.privateKey,
                                       loop: world.loop, clock: SkewedClock(offset: 120_000), local: Endpoint(Self.localhost, 0))
        var offsets: [Int64] = []
        client.onClockSkew = { offsets.append($0) }
        client.start()
        #expect(try world.spin(upTo: 3) { !offsets.isEmpty })
        #expect(offsets.allSatisfy { (-122_000 ... -118_000).contains($0) }, "\(offsets)")
        #expect(client.state != .registered && world.core.counters.expired >= 1)
        client.stop()
    }

    @Test func membersJoinAndSeeEachOthersCandidates() throws {
        let world = try World()
        let members = try (1...4).map { try world.client($0) }
        for member in members { member.start() }
        #expect(try world.spin { members.allSatisfy { $0.state == .registered && $0.members.count == 3 } })
        for member in members {
            for other in members where other !== member {
                let record = try #require(member.members[other.configuration.key])
                #expect(record.nat == .portRestrictedCone)
                // The member's own candidates, plus the address the server saw.
                #expect(Array(record.candidates.prefix(2)) == other.configuration.candidates)
                #expect(record.candidates.last == Candidate(.observed, other.local))
            }
            #expect(member.observed == member.local)
        }
        // A new endpoint is pushed to the others.
        let moved = Candidate(.reflexive, Endpoint("198.51.100.99:41000")!)
        members[0].update(nat: .symmetric, candidates: [moved])
        #expect(try world.spin { members.dropFirst().allSatisfy { $0.members[members[0].configuration.key]?.nat == .symmetric } })
        #expect(members[1].members[members[0].configuration.key]?.candidates.first == moved)
        // A member that leaves is pushed as gone.
        members[3].stop()
        #expect(try world.spin { members.prefix(3).allSatisfy { $0.members.count == 2 } })
        #expect(world.core.counters.dropped == 0)
    }

    /// Both sides ask at the start of their own attempts: requests that cross get one punch (one
    /// session); a request after the join window starts a new one.
    @Test func crossingPunchRequestsGetOnePunch() throws {
        var configuration = ControlCore.Configuration()
        configuration.punchJoinWindow = .milliseconds(300)
        let world = try World(configuration: configuration)
        let a = try world.client(1), b = try world.client(2)
        var starts: [UInt64] = []
        a.onPunch = { starts.append($1) }
        b.onPunch = { starts.append($1) }
        a.start(); b.start()
        #expect(try world.spin { a.members.count == 1 && b.members.count == 1 })
        a.requestPunch(with: b.configuration.key)
        #expect(try world.spin { starts.count == 2 })
        let first = starts[0]
        // b asks 5 ms later (its own start would differ), before a's punch began.
        #expect(try world.spin { WallClock.unixMillis() >= first - 95 })
        b.requestPunch(with: a.configuration.key)
        #expect(try world.spin { starts.count == 4 })
        #expect(Set(starts).count == 1, "four announcements of one punch: \(starts)")
        #expect(try world.spin { WallClock.unixMillis() > first + 300 })
        b.requestPunch(with: a.configuration.key)
        #expect(try world.spin { starts.count == 6 })
        #expect(starts[4] == starts[5] && starts[4] > first + 300, "after the window, a new punch")
    }

    @Test func punchCoordinationGivesBothTheSameStartTime() throws {
        let world = try World()
        let a = try world.client(1), b = try world.client(2)
        var punches: [(who: Int, peer: MemberKey, start: UInt64)] = []
        a.onPunch = { punches.append((1, $0.key, $1)) }
        b.onPunch = { punches.append((2, $0.key, $1)) }
        a.start(); b.start()
        #expect(try world.spin { a.members.count == 1 && b.members.count == 1 })
        let before = WallClock.unixMillis()
        a.requestPunch(with: b.configuration.key)
        #expect(try world.spin { punches.count == 2 })
        let fromA = try #require(punches.first { $0.who == 1 }), fromB = try #require(punches.first { $0.who == 2 })
        #expect(fromA.start == fromB.start, "one common start time")
        #expect(fromA.start >= before + 100 && fromA.start <= WallClock.unixMillis() + 200, "in the near future: now + 100 ms")
        #expect(fromA.peer == b.configuration.key && fromB.peer == a.configuration.key)
        // Punching a stranger is refused.
        var refused: [ControlMessage.Refusal] = []
        a.onRefused = { refused.append($0) }
        a.requestPunch(with: MemberKey([UInt8](repeating: 0xEE, count: 32))!)
        #expect(try world.spin { refused == [.peerUnknown] })
    }

    @Test func relayRequestsGiveBothSidesVerifiableTokensForOnePair() throws {
        let relayKey = Keys.relayKey(secret: Array("relay".utf8))
        let relay = Endpoint("192.0.2.1:40000")!
        let world = try World(relays: [relay], relayKey: relayKey)
        let a = try world.client(1), b = try world.client(2)
        var offers: [Int: [RelayOffer]] = [:]
        a.onRelays = { _, list in offers[1] = list }
        b.onRelays = { _, list in offers[2] = list }
        a.start(); b.start()
        #expect(try world.spin { a.members.count == 1 && b.members.count == 1 })
        a.requestRelay(with: b.configuration.key)
        #expect(try world.spin { offers.count == 2 })
        let tokens = try [1, 2].map { index -> RelayToken in
            let offer = try #require(offers[index]?.first)
            #expect(offer.service == relay)
            return try offer.token.withUnsafeBytes { try RelayToken(verifying: $0, key: relayKey, nowSeconds: WallClock.unixSeconds()) }
        }
        #expect(tokens[0].pairID == tokens[1].pairID)
        #expect(Set(tokens.map(\.side)) == [0, 1])
        #expect(tokens.allSatisfy { $0.address == ControlLoopbackTests.localhost })
    }

    @Test func aMemberWithoutAValidCertificateIsRefusedAndCounted() throws {
        let world = try World()
        let honest = try world.client(1)
        // A certificate from another authority, and one for another key.
        let rogue = Crypto.signingKeyPair(seed: [UInt8](repeating: 0x66, count: 32))
        let uncertified = try world.client(2, member: Self.party.member(2, certifiedBy: rogue.secretKey))
        let borrowed = Self.party.member(3)
        let thief = try world.client(4, member: TestMember(privateKey: Self.party.member(4).privateKey, key: Self.party.member(4).key,
                                                           certificate: borrowed.certificate))
        var refusals: [ControlMessage.Refusal] = []
        uncertified.onRefused = { refusals.append($0) }
        thief.onRefused = { refusals.append($0) }
        for client in [honest, uncertified, thief] { client.start() }
        #expect(try world.spin { honest.state == .registered })
        #expect(try world.spin { refusals.filter { $0 == .certificateRefused }.count >= 2 })
        #expect(uncertified.registrations == 0 && thief.registrations == 0)
        #expect(world.core.counters.refusedCertificates >= 2)
        #expect(honest.members.isEmpty, "nobody uncertified is in the registry")
        #expect(world.core.party(named: "lan")?.members.count == 1)
        // An unknown party is dropped too.
        let stranger = try world.client(5, party: "other")
        stranger.start()
        #expect(try world.spin { world.core.counters.unknownParty >= 1 })
    }

    /// Register, heartbeat and leave for a member's key, sealed by another member (who holds a valid
    /// certificate of its own): all refused as unauthenticated, and the member stays as it was.
    @Test func nobodySpeaksForAnotherMember() throws {
        let world = try World()
        let victim = try world.client(1), attacker = try world.client(2)
        victim.start(); attacker.start()
        #expect(try world.spin { victim.members.count == 1 && attacker.members.count == 1 })
        let socket = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let victimMember = Self.party.member(1), attackerMember = Self.party.member(2)
        let forged: [ControlMessage.Body] = [
            .leave,
            .heartbeat(revision: 0),
            .register(cookie: Self.noCookie, nat: .open, candidates: [Candidate(.reflexive, Endpoint("192.0.2.99:1")!)],
                      certificate: victimMember.certificate),
        ]
        for (index, body) in forged.enumerated() {
            try socket.send(Self.message(body, from: victimMember, sealedBy: attackerMember, nonce: UInt64(100 + index)), to: world.endpoint)
        }
        #expect(try world.spin { world.core.counters.unauthenticated >= 3 })
        _ = try world.spin(upTo: 0.3) { false }
        let record = try #require(world.core.party(named: "lan")?.members[victimMember.key])
        #expect(record.online)
        #expect(!record.record.candidates.contains(Candidate(.reflexive, Endpoint("192.0.2.99:1")!)))
        #expect(attacker.members[victimMember.key] != nil, "no leave was pushed")
    }

    /// A message claiming to come from the server but sealed by a member (who knows the server's
    /// public key and its own control key) is dropped by the other members.
    @Test func nobodySpeaksAsTheServer() throws {
        let world = try World()
        let victim = try world.client(1), attacker = try world.client(2)
        victim.start(); attacker.start()
        #expect(try world.spin { victim.members.count == 1 })
        let dropped = victim.dropped
        let attackerMember = Self.party.member(2)
        // The attacker's own control key (the only one it has), and a spoofed source: the server's.
        let fake = ControlMessage(partyID: Self.party.id, timestampMillis: WallClock.unixMillis(), nonce: 5, sender: Self.party.serverKey,
                                  body: .member(event: .left, record: MemberRecord(key: attackerMember.key, nat: .open, candidates: []), revision: 99))
            .encoded(key: Self.party.controlKey(attackerMember))
        try world.server.sockets[0].send(fake, to: victim.local)
        #expect(try world.spin { victim.dropped > dropped })
        #expect(victim.members[attackerMember.key] != nil)
    }

    @Test func aReplayedMessageIsRefusedAndCounted() throws {
        let world = try World()
        let socket = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let member = Self.party.member(7)
        let register = Self.message(.register(cookie: Self.noCookie, nat: .open, candidates: [], certificate: member.certificate),
                                    from: member, nonce: 1234)
        var buffer = [UInt8](repeating: 0, count: 2048)
        func answers() -> Int {
            var count = 0
            while (try? socket.receive(into: &buffer)) ?? nil != nil { count += 1 }
            return count
        }
        try socket.send(register, to: world.endpoint)
        var first = 0
        #expect(try world.spin { first += answers(); return first == 1 })
        try socket.send(register, to: world.endpoint)
        #expect(try world.spin { world.core.counters.replayed == 1 })
        _ = try world.spin(upTo: 0.2) { false }
        #expect(answers() == 0, "a replay gets no answer")
        // An old message (outside the window) is refused as expired.
        try socket.send(Self.message(.heartbeat(revision: 0), from: member, nonce: 99, at: WallClock.unixMillis() - 60_000), to: world.endpoint)
        #expect(try world.spin { world.core.counters.expired == 1 })
    }

    @Test func garbageAndFloodsAreDroppedCountedAndTheServerKeepsServing() throws {
        var configuration = ControlCore.Configuration()
        configuration.strangerPerSecond = 20
        configuration.strangerBurst = 40
        let world = try World(configuration: configuration)
        let flooder = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let target = world.endpoint
        try flooder.send([0x4C, 0x43, 2], to: target)                                     // truncated
        try flooder.send([UInt8](repeating: 0x4C, count: 1300), to: target)                  // oversized
        try flooder.send([0x4C, 0x43, 9] + [UInt8](repeating: 0, count: 100), to: target)    // another version
        // Registers of strangers (random keys, no valid tag), from one source: limited per source.
        for index in 0..<200 {
            var bytes = Self.message(.register(cookie: Self.noCookie, nat: .open, candidates: [], certificate: []),
                                     from: Self.party.member(100 + index % 50), nonce: UInt64(index))
            bytes[bytes.count - 1] ^= 1
            try flooder.send(bytes, to: target)
        }
        #expect(try world.spin { world.core.counters.received >= 150 })
        let c = world.core.counters
        #expect(c.truncated == 1 && c.oversized == 1 && c.badVersion == 1)
        #expect(c.rateLimited > 100, "the flood is rate limited: \(c.rateLimited)")
        // A member from another address is served meanwhile.
        let member = try world.client(1)
        member.start()
        #expect(try world.spin { member.state == .registered })
    }

    /// Strangers above the threshold must echo a cookie: spoofed registers cost the server no X25519
    /// and no state, a real member (which receives its cookie) still joins, and members already known
    /// are served as before.
    @Test func underLoadStrangersMustEchoACookie() throws {
        var configuration = ControlCore.Configuration()
        configuration.cookieThreshold = 20
        configuration.strangerPerSecond = 1e6
        configuration.strangerBurst = 1e6
        let world = try World(configuration: configuration)
        let known = try world.client(1)
        known.start()
        #expect(try world.spin { known.state == .registered })
        let flooder = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        for index in 0..<100 {
            let member = Self.party.member(100 + index)
            try flooder.send(Self.message(.register(cookie: Self.noCookie, nat: .open, candidates: [], certificate: member.certificate),
                                          from: member, nonce: UInt64(index)), to: world.endpoint)
        }
        #expect(try world.spin { world.core.counters.cookiesSent >= 70 })
        #expect((world.core.party(named: "lan")?.members.count ?? 0) < 40, "strangers past the threshold did not get in without a cookie")
        // A member that echoes its cookie joins; the known member's heartbeats go on.
        let newcomer = try world.client(2)
        newcomer.start()
        #expect(try world.spin { newcomer.state == .registered && known.members.count >= 1 })
        #expect(known.state == .registered)
    }

    /// A datagram of another protocol version gets the version notice, and the client reports it.
    @Test func anotherProtocolVersionIsNamed() throws {
        let world = try World()
        let socket = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        var old = Self.message(.heartbeat(revision: 0), from: Self.party.member(1))
        old[2] = 1
        try socket.send(old, to: world.endpoint)
        var buffer = [UInt8](repeating: 0, count: 64)
        var notice: ControlNotice?
        #expect(try world.spin {
            if let (count, _) = try? socket.receive(into: &buffer) { notice = buffer.withUnsafeBytes { ControlNotice(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count])) } }
            return notice != nil
        })
        #expect(notice == .version(lowest: 2, highest: 2))
        // A client facing a server that speaks version 3 says so.
        let fakeServer = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        var configuration = Self.party.configuration(Self.party.member(1), server: fakeServer.local)
        configuration.candidates = []
        let client = try ControlClient(configuration, privateKey: Self.party.member(1).privateKey, loop: world.loop, clock: world.clock,
                                       local: Endpoint(Self.localhost, 0))
        var mismatch: (UInt8, UInt8)?
        client.onVersionMismatch = { mismatch = ($0, $1) }
        client.start()
        try fakeServer.send(ControlNotice.version(lowest: 3, highest: 3).encoded().enumerated().map { $0.offset == 2 ? 3 : $0.element },
                            to: client.local)
        #expect(try world.spin { mismatch != nil })
        #expect(mismatch?.0 == 3 && client.serverVersions?.lowest == 3)
    }

    /// The administrator removes a member: it leaves at once (pushed) and cannot come back.
    @Test func aRevokedMemberLeavesAndIsRefused() throws {
        let world = try World()
        let a = try world.client(1), b = try world.client(2)
        var refusals: [ControlMessage.Refusal] = []
        b.onRefused = { refusals.append($0) }
        a.start(); b.start()
        #expect(try world.spin { a.members.count == 1 })
        world.server.send(world.core.revoke([Self.party.member(2).key], wall: WallClock.unixMillis()))
        #expect(try world.spin { a.members.isEmpty })
        #expect(world.core.counters.revokedMembers == 1)
        b.stop()
        _ = try world.spin(upTo: 0.2) { false }
        let again = try world.client(2)
        again.onRefused = { refusals.append($0) }
        again.start()
        #expect(try world.spin { refusals.contains(.revoked) })
        #expect(a.members.isEmpty)
    }

    /// A renewed certificate (the administrator granted another address) is taken with the next
    /// register, and the others learn the new prefixes; one from another authority is refused and
    /// the old one stays.
    @Test func aRenewedCertificateIsPushed() throws {
        let world = try World()
        let a = try world.client(1), b = try world.client(2)
        a.start(); b.start()
        #expect(try world.spin { b.members[Self.party.member(1).key] != nil })
        let member = Self.party.member(1)
        a.configuration.certificate = Self.party.certificate(for: member.key, addresses: [IPPrefix("100.64.0.1/24")!, IPPrefix("100.64.1.1/24")!])
        a.update(nat: a.configuration.nat, candidates: a.configuration.candidates)
        #expect(try world.spin { b.members[member.key]?.addresses.contains(IPPrefix("100.64.1.1/32")!) == true })
        var refusals: [ControlMessage.Refusal] = []
        a.onRefused = { refusals.append($0) }
        let rogue = Crypto.signingKeyPair(seed: [UInt8](repeating: 0x66, count: 32))
        a.configuration.certificate = Self.party.certificate(for: member.key, addresses: [IPPrefix("100.64.9.9/24")!], secretKey: rogue.secretKey)
        a.update(nat: a.configuration.nat, candidates: a.configuration.candidates)
        #expect(try world.spin { refusals.contains(.certificateRefused) })
        #expect(b.members[member.key]?.addresses.contains(IPPrefix("100.64.9.9/32")!) == false)
    }

    /// Members offline for longer than the forget time are removed: the party cannot be filled for good.
    @Test func offlineMembersAreForgotten() throws {
        var configuration = ControlCore.Configuration()
        configuration.forgetAfter = .seconds(60)
        let world = try World(configuration: configuration)
        let a = try world.client(1)
        a.start()
        #expect(try world.spin { a.state == .registered })
        a.stop()
        #expect(try world.spin { world.core.party(named: "lan")?.members[Self.party.member(1).key]?.online == false })
        _ = world.core.expireSilent(now: world.clock.now, wall: WallClock.unixMillis() + 30_000)
        #expect(world.core.party(named: "lan")?.members.count == 1, "not yet")
        _ = world.core.expireSilent(now: world.clock.now, wall: WallClock.unixMillis() + 62_000)
        #expect(world.core.party(named: "lan")?.members.isEmpty == true)
        #expect(world.core.counters.forgottenMembers == 1)
    }

    @Test func stunIsAnsweredOnTheControlPort() throws {
        let world = try World()
        let socket = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        // A binding request: type 0x0001, length 0, magic cookie, transaction id.
        let request: [UInt8] = [0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 5, count: 12)
        try socket.send(request, to: world.server.sockets[0].local)
        var buffer = [UInt8](repeating: 0, count: 512)
        var reply: Int?
        #expect(try world.spin { reply = (try? socket.receive(into: &buffer))??.count; return reply != nil })
        #expect(buffer[0] == 0x01 && buffer[1] == 0x01, "binding success response")
        #expect(world.server.stunAnswered == 1)
    }

    /// A scripted server: a plain socket sealing server messages to one client, and reading its requests.
    final class ScriptedServer {
        let world: World
        let socket: UDPSocket
        let client: ControlClient
        let key: [UInt8]
        private var nonce: UInt64 = 0
        private var buffer = [UInt8](repeating: 0, count: 2048)

        init() throws {
            world = try World()
            socket = try UDPSocket(binding: Endpoint(ControlLoopbackTests.localhost, 0))
            let member = ControlLoopbackTests.party.member(1)
            var configuration = ControlLoopbackTests.party.configuration(member, server: socket.local)
            configuration.candidates = [Candidate(.local, Endpoint("203.0.113.1:51820")!)]
            client = try ControlClient(configuration, privateKey: member.privateKey, loop: world.loop, clock: world.clock,
                                       local: Endpoint(ControlLoopbackTests.localhost, 0))
            key = ControlLoopbackTests.party.controlKey(member)
        }

        func send(_ body: ControlMessage.Body) throws {
            nonce += 1
            let message = ControlMessage(partyID: ControlLoopbackTests.party.id, timestampMillis: WallClock.unixMillis(), nonce: nonce,
                                         sender: ControlLoopbackTests.party.serverKey, body: body)
            try socket.send(message.encoded(key: key), to: client.local)
        }

        /// The client's next request, within `seconds`.
        func nextRequest(within seconds: Double = 3) throws -> ControlMessage.Body? {
            var request: ControlMessage.Body?
            _ = try world.spin(upTo: seconds) {
                if let (count, _) = try? socket.receive(into: &buffer) {
                    request = try? ControlMessage(authenticating: Array(buffer[..<count]), key: key).body
                }
                return request != nil
            }
            return request
        }

        /// Member `index`'s record, as the server would push it.
        func record(_ index: Int) -> MemberRecord {
            let other = ControlLoopbackTests.party.member(index)
            return MemberRecord(key: other.key, nat: .open, candidates: [Candidate(.local, Endpoint("203.0.113.\(index):51820")!)],
                                certificate: other.certificate)
        }

        /// Starts the client and answers its register: revision 5, heartbeats every second, `others` present.
        func register(presenting others: [Int]) throws {
            client.start()
            guard case .register = try #require(try nextRequest()) else { Issue.record("the first request is not a register"); return }
            try answer(presenting: others, revision: 5)
            #expect(try world.spin { client.state == .registered })
        }

        func answer(presenting others: [Int], revision: UInt64, announcing count: Int? = nil, epoch: UInt64 = 1,
                    heartbeatSeconds: UInt16 = 1) throws {
            try send(.registered(epoch: epoch, revision: revision, heartbeatSeconds: heartbeatSeconds, observed: client.local,
                                 others: UInt16(count ?? others.count)))
            for index in others { try send(.member(event: .present, record: record(index), revision: revision)) }
        }
    }

    /// Pushes of revisions 6 and 8: the push of 7 was lost, so the client keeps revision 6, and
    /// when its heartbeat is answered with revision 8 it registers again, still registered, to get
    /// every record afresh. Without the gap it only sends heartbeats.
    @Test func aLostPushIsCaughtUpOnWhileRegistered() throws {
        for losing in [true, false] {
            let server = try ScriptedServer()
            let client = server.client
            try server.register(presenting: [])
            try server.send(.member(event: .joined, record: server.record(2), revision: 6))
            try server.send(.member(event: .joined, record: server.record(3), revision: losing ? 8 : 7))
            #expect(try server.world.spin { client.members.count == 2 })
            #expect(client.revision == (losing ? 6 : 7))
            guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no heartbeat"); return }
            try server.send(.heartbeatAck(epoch: 1, revision: losing ? 8 : 7))
            if losing {
                guard case .register = try #require(try server.nextRequest()) else { Issue.record("no register after the gap"); return }
                #expect(client.state == .registered && client.registrations == 1, "an update, not a new registration")
                try server.answer(presenting: [2, 3], revision: 8)
                #expect(try server.world.spin { client.revision == 8 && client.updates == 1 && client.members.count == 2 })
            } else {
                guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no gap, no register"); return }
            }
        }
    }

    /// Records that overtake the `registered` answer they belong to (datagrams reorder) are in the
    /// view it announces: the member stays known — a punch announced with it is taken — and the
    /// view is complete, so the next heartbeat's ack registers nothing again. The same for an
    /// update's answer while registered.
    @Test func recordsAheadOfTheirAnswerAreInTheView() throws {
        let server = try ScriptedServer()
        let client = server.client
        var punched: [MemberKey] = []
        client.onPunch = { record, _ in punched.append(record.key) }
        client.start()
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("the first request is not a register"); return }
        for index in [2, 3] { try server.send(.member(event: .present, record: server.record(index), revision: 5)) }
        try server.send(.registered(epoch: 1, revision: 5, heartbeatSeconds: 1, observed: client.local, others: 2))
        #expect(try server.world.spin { client.state == .registered })
        #expect(client.members.count == 2, "the records that came first are kept")
        try server.send(.punch(peer: server.record(2), startMillis: 1))
        #expect(try server.world.spin { punched == [server.record(2).key] })
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no heartbeat"); return }
        try server.send(.heartbeatAck(epoch: 1, revision: 5))
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("the view is taken as incomplete"); return }

        // Member 2 left meanwhile (its push lost): the registry is at revision 6.
        client.update(nat: .open, candidates: [])
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("no register for the update"); return }
        try server.send(.member(event: .present, record: server.record(3), revision: 6))
        try server.send(.registered(epoch: 1, revision: 6, heartbeatSeconds: 1, observed: client.local, others: 1))
        #expect(try server.world.spin { client.updates == 1 })
        #expect(client.members.keys.sorted() == [server.record(3).key], "member 2 left, member 3 stayed")
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no heartbeat"); return }
        try server.send(.heartbeatAck(epoch: 1, revision: 6))
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("the update's view is taken as incomplete"); return }
    }

    /// A view left incomplete (records lost) is asked for again a second after its answer, not a
    /// heartbeat later; the second answer's records overtake it, and the one that came with the
    /// first is lost this time: with what the first brought the view is complete (one revision is
    /// one view), and no member is taken for gone.
    @Test func anIncompleteViewIsAskedForAgainAndCompletesAcrossAnswers() throws {
        let server = try ScriptedServer()
        let client = server.client
        var left: [MemberKey] = []
        client.onChange = { event, record in if event == .left { left.append(record.key) } }
        try server.register(presenting: [2, 3, 4])
        #expect(try server.world.spin { client.members.count == 3 })
        // The registry moved to revision 6 (a push lost); of its view only member 4's record comes.
        // Heartbeats 10 s apart from now: a register within a second and a half is the view's.
        client.update(nat: .open, candidates: [])
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("no register for the update"); return }
        try server.answer(presenting: [4], revision: 6, announcing: 3, heartbeatSeconds: 10)
        #expect(try server.world.spin { client.updates == 1 })
        guard case .register = try server.nextRequest(within: 1.5) else { Issue.record("an incomplete view is not asked for again"); return }
        for index in [2, 3] { try server.send(.member(event: .present, record: server.record(index), revision: 6)) }
        try server.send(.registered(epoch: 1, revision: 6, heartbeatSeconds: 10, observed: client.local, others: 3))
        #expect(try server.world.spin { client.updates == 2 })
        #expect(left.isEmpty, "no member left")
        #expect(client.members.count == 3)
        // What the client sent before the answer came (a resend in place of a heartbeat) is read
        // first; then a heartbeat armed before the interval grew may come, and no register does.
        while try server.nextRequest(within: 0.2) != nil {}
        var again = false
        for _ in 0..<2 { if case .register = try server.nextRequest(within: 0.8) { again = true } }
        #expect(!again, "the view is complete: it is not asked for again")
    }

    /// A punch announced with a member this side does not know (the push of its joining was lost)
    /// asks for the view again at once, not at the next heartbeat: the member is met a round trip
    /// later.
    @Test func aPunchWithAMemberNotKnownAsksForTheViewAgain() throws {
        let server = try ScriptedServer()
        let client = server.client
        client.start()
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("the first request is not a register"); return }
        try server.answer(presenting: [], revision: 5, heartbeatSeconds: 10)
        #expect(try server.world.spin { client.state == .registered })
        try server.send(.punch(peer: server.record(2), startMillis: 1))
        guard case .register = try server.nextRequest(within: 1) else { Issue.record("the view is not asked for again"); return }
        try server.answer(presenting: [2], revision: 6, heartbeatSeconds: 10)
        #expect(try server.world.spin { client.members[server.record(2).key] != nil })
    }

    /// New candidates go in a register at once; lost, they go again in place of each heartbeat
    /// until the server answers, and then heartbeats resume.
    @Test func aLostUpdateIsSentAgainUntilAnswered() throws {
        let server = try ScriptedServer()
        let client = server.client
        try server.register(presenting: [])
        let moved = Candidate(.reflexive, Endpoint("198.51.100.1:40000")!)
        client.update(nat: .portRestrictedCone, candidates: [moved])
        for _ in 0..<3 {
            guard case .register(_, _, let candidates, _) = try #require(try server.nextRequest()) else {
                Issue.record("an unanswered update is not sent again"); return
            }
            #expect(candidates == [moved])
        }
        #expect(client.state == .registered)
        try server.answer(presenting: [], revision: 5)
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no heartbeat after the answer"); return }
        #expect(client.updates == 1)
    }

    /// The answer announces two members and one record is lost: the next heartbeat's ack registers
    /// again. A member known before that the complete view does not bring left meanwhile (its
    /// `left` push was lost): the client reports it gone, but not from a restarted server's view.
    @Test func anIncompleteViewIsFetchedAgainAndAMissedLeaveIsReported() throws {
        let server = try ScriptedServer()
        let client = server.client
        var left: [MemberKey] = []
        client.onChange = { event, record in if event == .left { left.append(record.key) } }
        try server.register(presenting: [2])
        #expect(try server.world.spin { client.members.count == 1 })
        // Member 3 joins, member 2's leave is lost (revision 7 never comes), then a register's answer
        // announces two but only member 3's record arrives.
        try server.send(.member(event: .joined, record: server.record(3), revision: 6))
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no heartbeat"); return }
        try server.send(.heartbeatAck(epoch: 1, revision: 7))
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("no register after the gap"); return }
        try server.answer(presenting: [3], revision: 7, announcing: 2)
        #expect(try server.world.spin { client.updates == 1 && client.members.count == 1 })
        #expect(left.isEmpty, "an incomplete view says nothing of who left")
        guard case .heartbeat = try #require(try server.nextRequest()) else { Issue.record("no heartbeat"); return }
        try server.send(.heartbeatAck(epoch: 1, revision: 7))
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("an incomplete view is not fetched again"); return }
        try server.answer(presenting: [3], revision: 7)
        #expect(try server.world.spin { left == [server.record(2).key] })
        #expect(client.members.keys.sorted() == [server.record(3).key])
        // A restarted server (another epoch) restores its members offline: member 3, not back yet, has not left.
        try server.send(.refused(.registerAgain))
        guard case .register = try #require(try server.nextRequest()) else { Issue.record("no register for the new epoch"); return }
        try server.answer(presenting: [], revision: 1, epoch: 2)
        #expect(try server.world.spin { client.epoch == 2 && client.state == .registered })
        #expect(!(try server.world.spin(upTo: 0.3) { left.count > 1 }), "nobody reported gone on another epoch's view")
    }
}

/// Control server and relay together in one event loop: the control server learns the relay's load
/// (authenticated load queries), offers it with tokens, and both sides allocate with those tokens.
@Suite(.serialized) struct ControlWithRelayTests {
    @Test func offersCarryTheRelaysLoadAndTheirTokensAllocate() throws {
        let relaySecret = Array("shared with relays".utf8)
        let relayKey = Keys.relayKey(secret: relaySecret)
        let (world, relay) = try withFreePortRange(10, on: ControlLoopbackTests.localhost) { range in
            let world = try ControlLoopbackTests.World(relays: [Endpoint(ControlLoopbackTests.localhost, range.lowerBound)], relayKey: relayKey)
            return (world, try RelayServer(RelayServer.Configuration(listen: [ControlLoopbackTests.localhost], ports: range, key: relayKey),
                                           loop: world.loop))
        }
        #expect(try world.spin { world.core.relays[0].reported }, "the relay answered the load query")
        #expect(world.core.relays[0].capacity == 5)

        let a = try world.client(1), b = try world.client(2)
        var offers: [Int: RelayOffer] = [:]
        a.onRelays = { offers[1] = $1.first }
        b.onRelays = { offers[2] = $1.first }
        a.start(); b.start()
        #expect(try world.spin { a.members.count == 1 && b.members.count == 1 })
        b.requestRelay(with: a.configuration.key)
        #expect(try world.spin { offers.count == 2 })
        #expect(offers[1]?.capacity == 5 && offers[1]?.allocations == 0)

        var ports: [UInt16] = []
        for index in [1, 2] {
            let answer = try world.allocate(under: try #require(offers[index]))
            #expect(answer != nil)
            guard case .allocated(1, .granted, let port, _) = answer else { Issue.record("not granted: \(String(describing: answer))"); continue }
            ports.append(port)
        }
        #expect(Set(ports).count == 2 && relay.allocationCount == 1, "one allocation, one port per side")
    }
}

/// A relay on IPv4 and IPv6, given to the control server at both: a member that speaks IPv4 to the
/// server is offered the relay's IPv4 service only, one that speaks IPv6 its IPv6 one (the token
/// names the address each speaks from), and both sides land in one allocation.
@Suite(.serialized) struct ControlWithDualStackRelayTests {
    @Test func membersOverIPv4AndIPv6ShareOneAllocation() throws {
        let relaySecret = Array("shared with relays".utf8)
        let relayKey = Keys.relayKey(secret: relaySecret)
        let loopback6 = IPAddress("::1")!
        let (world, relay) = try withFreePortRange(10, on: ControlLoopbackTests.localhost) { range in
            let world = try ControlLoopbackTests.World(relays: [Endpoint(ControlLoopbackTests.localhost, range.lowerBound), Endpoint(loopback6, range.lowerBound)],
                                                       relayKey: relayKey, listen: [Endpoint(ControlLoopbackTests.localhost, 0), Endpoint(loopback6, 0)])
            return (world, try RelayServer(RelayServer.Configuration(listen: [ControlLoopbackTests.localhost, loopback6], ports: range, key: relayKey),
                                           loop: world.loop))
        }
        #expect(try world.spin { world.core.relays.allSatisfy(\.reported) }, "the relay answered on both families")
        let members = [try world.client(1), try world.client(2, over: 1)]
        var offers: [Int: [RelayOffer]] = [:]
        members[0].onRelays = { offers[0] = $1 }
        members[1].onRelays = { offers[1] = $1 }
        for member in members { member.start() }
        #expect(try world.spin { members.allSatisfy { $0.members.count == 1 } })
        members[1].requestRelay(with: members[0].configuration.key)
        #expect(try world.spin { offers.count == 2 })
        #expect(offers[0]?.map(\.service.address) == [ControlLoopbackTests.localhost])
        #expect(offers[1]?.map(\.service.address) == [loopback6])

        for index in [0, 1] {
            let answer = try world.allocate(under: try #require(offers[index]?.first))
            #expect(answer != nil)
            guard case .allocated(1, .granted, _, _) = answer else { Issue.record("not granted: \(String(describing: answer))"); continue }
        }
        #expect(relay.allocationCount == 1, "one allocation for the pair")
        for member in members { member.stop() }
    }
}

/// With --alternate, the control port is an RFC 5780 STUN server: OTHER-ADDRESS names the alternate.
@Suite(.serialized) struct ControlSTUNAlternateTests {
    @Test func otherAddressIsTheAlternate() throws {
        let loop = try EventLoop()
        let port = try { try UDPSocket(binding: Endpoint(ControlLoopbackTests.localhost, 0)).local.port }()
        let base = port < 60_000 ? port : 43_000
        let primary = Endpoint(ControlLoopbackTests.localhost, base), alternate = Endpoint(.v4(IPv4Address(127, 0, 0, 2)), base + 1)
        let core = ControlCore(privateKey: ControlLoopbackTests.party.serverPrivate)
        let server = try ControlServer(listen: [primary], alternate: alternate, core: core, store: nil, loop: loop)
        #expect(server.sockets.count == 4)
        let client = try UDPSocket(binding: Endpoint(ControlLoopbackTests.localhost, 0))
        let request = Message.bindingRequest(transactionID: TransactionID.random())
        try client.send(request.encoded(), to: primary)
        var buffer = [UInt8](repeating: 0, count: 512)
        var reply: Message?
        let clock = SystemClock()
        let deadline = clock.now + 2_000_000_000
        while reply == nil && clock.now < deadline {
            try loop.run(until: clock.now + 5_000_000)
            if let (count, _) = try client.receive(into: &buffer) { reply = try Message(decoding: Array(buffer[..<count])) }
        }
        let attributes = try #require(reply).attributes
        #expect(attributes.contains(.otherAddress(alternate)))
        #expect(attributes.contains(.xorMappedAddress(client.local)))
    }
}

extension ControlClient {
    /// The client's UDP socket's address (these clients run on their own sockets).
    var local: Endpoint { (socket as! UDPSocket).local }
}
