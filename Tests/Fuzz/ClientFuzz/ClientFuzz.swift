// libFuzzer target for what a member does with what reaches its control socket: `make fuzz-client`.
// Each input is a program run against a fresh ControlClient (member 0 of the fuzz party) on
// loopback: a socket plays the control server and sends it datagrams, each followed by one round of
// the client's event loop (its real readable path). The operations:
//   0 raw bytes (notices, other versions, garbage);
//   1 `type ‖ body` sealed as the server under the member's control key (authenticated garbage);
//   2 the same with a header the client must refuse, or may take (party, sender, key, timestamp,
//     replay, another source);
//   3 a member record whose certificate is the input as it is (valid seeds, mutated);
//   4 a member record whose certificate is the input signed by the party's authority;
//   5 the cookie notice, for the register just sent or another;
//   6 well-formed server messages (registered, heartbeat ack, punch, relays, refusal, member);
//   7 time passes (the registration chart's timers: registers, heartbeats, backoff);
//   8 what the agent calls (new candidates, punch and relay requests, stop).
// Checked: the client acts (callbacks) only on a message it must accept, and as that message says;
// it keeps only members whose certificate verifies, with exactly the prefixes it grants; it takes
// punch announcements only for members it knows; it unmasks relay reply keys with its own key; a
// cookie makes it register again only when it answers the register just sent.
// Without -D FUZZING it is a replayer (`ClientFuzz FILE…`) and writes the seeds (`--seeds DIR`).
#if canImport(Glibc)
import Glibc
#endif
import Control
import EventLoop
import FuzzSupport
import Net
import Output
import Rendezvous
import Time
import STUN

enum Fuzz {
    static let me = 0
    static let controlKey = FuzzParty.controlKeys[me]
    nonisolated(unsafe) static let server = try! UDPSocket(binding: Endpoint("127.0.0.1:0")!)
    nonisolated(unsafe) static let stranger = try! UDPSocket(binding: Endpoint("127.0.0.1:0")!)
    /// Always readable: its handler ends the loop's round, so `run()` makes exactly one round.
    static let wake: Int32 = {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0, write(ends[1], [UInt8(1)], 1) == 1 else { fatalError("pipe") }
        return ends[0]
    }()
    static let logger = Logger(label: "fuzz", output: LogOutput(level: .critical, sink: { _ in }))
    nonisolated(unsafe) static var counter: UInt64 = 0
}

/// What the datagram being delivered may make the client do.
enum Expectation {
    /// No callback (raw bytes, refused headers, timers).
    case nothing
    /// Callbacks only as this message says; `certain` when the client must accept it.
    case message(ControlMessage, certain: Bool)
}

func fail(_ what: String) -> Never { fatalError("ClientFuzz: \(what)") }

/// The certificate of `record` verified as a member must verify it, and the prefixes it grants.
func verifiedPrefixes(_ record: MemberRecord) -> [IPPrefix]? {
    (try? MemberCertificate.verified(record.certificate, authority: FuzzParty.authority.publicKey, party: FuzzParty.id,
                                     member: record.key, now: WallClock.unixSeconds()))?.allowedPrefixes
}

final class Run {
    let clock = VirtualClock(now: 1_000_000_000_000)
    let loop: EventLoop
    let client: ControlClient
    var expectation = Expectation.nothing
    /// Whether a callback reported the datagram being delivered.
    var fired = false
    /// The nonce of the last register the client sent, and its cookie; registers seen this round.
    var registerNonce: UInt64 = 0
    var registers: [[UInt8]] = []
    /// The last sealed datagram sent, for the replay variant.
    var last: [UInt8]?

    init() throws {
        loop = try EventLoop(clock: clock)
        var configuration = ControlClient.Configuration(server: Fuzz.server.local, serverKey: FuzzParty.server, party: FuzzParty.name,
                                                        authority: FuzzParty.authority.publicKey, key: FuzzParty.keys[Fuzz.me],
                                                        certificate: FuzzParty.certificates[Fuzz.me])
        configuration.candidates = [Candidate(.local, Endpoint("192.0.2.2:51820")!)]
        client = try ControlClient(configuration, privateKey: FuzzParty.privateKeys[Fuzz.me], loop: loop, clock: clock,
                                   local: Endpoint("127.0.0.1:0")!, logger: Fuzz.logger)
        try loop.register(Fuzz.wake) { [unowned loop] in loop.stop() }
        client.onChange = { [unowned self] event, record in changed(event, record) }
        client.onPunch = { [unowned self] record, start in punched(record, start) }
        client.onRelays = { [unowned self] peer, offers in relayed(peer, offers) }
        client.onRefused = { [unowned self] refusal in
            fired = true
            trace("  refused \(refusal)")
            guard case .message(let message, _) = expectation, case .refused(refusal) = message.body else { fail("refusal \(refusal) from nowhere") }
        }
        client.onBadCertificate = { [unowned self] key, problem in
            fired = true
            trace("  bad certificate \(key): \(problem)")
            guard case .message(let message, _) = expectation, case .member(_, let record, _) = message.body, record.key == key else {
                fail("a certificate refused that no message brought")
            }
            if verifiedPrefixes(record) != nil { fail("a valid certificate refused") }
        }
        client.onVersionMismatch = { lowest, highest in
            if (lowest...max(lowest, highest)).contains(ControlMessage.version) { fail("version mismatch with a server that speaks ours") }
        }
        drain()
        client.start()
        drain()
    }

    func changed(_ event: ControlMessage.MemberEvent, _ record: MemberRecord) {
        fired = true
        trace("  member \(event) \(record.key) \(record.addresses)")
        guard case .message(let message, _) = expectation, case .member(event, let sent, _) = message.body, sent.key == record.key else {
            fail("member change \(event) from nowhere")
        }
        guard event != .left else { return }
        guard record.nat == sent.nat, record.candidates == sent.candidates, record.certificate == sent.certificate,
              let prefixes = verifiedPrefixes(sent), record.addresses == prefixes else {
            fail("member \(record.key) taken without its certificate's grant")
        }
    }

    func punched(_ record: MemberRecord, _ start: UInt64) {
        fired = true
        trace("  punch \(record.key) at \(start) \(record.candidates)")
        guard case .message(let message, _) = expectation, case .punch(let peer, start) = message.body, peer.key == record.key else {
            fail("punch from nowhere")
        }
        guard let known = client.members[record.key], known.certificate == record.certificate, known.addresses == record.addresses,
              record.candidates == peer.candidates, record.nat == peer.nat, verifiedPrefixes(record) == record.addresses else {
            fail("punch announced with an unknown member")
        }
    }

    func relayed(_ peer: MemberKey, _ offers: [RelayOffer]) {
        fired = true
        trace("  relays \(peer): \(offers.count) offers")
        guard case .message(let message, _) = expectation, case .relays(peer, let sent) = message.body, sent.count == offers.count else {
            fail("relay offers from nowhere")
        }
        for (offer, masked) in zip(offers, sent) {
            let mask = Keys.replyKeyMask(controlKey: Fuzz.controlKey, token: masked.token)
            guard offer.token == masked.token, offer.service == masked.service,
                  offer.replyKey == zip(masked.replyKey, mask).map({ $0 ^ $1 }) else { fail("reply key not unmasked with our key") }
        }
    }

    /// Sends `bytes` to the client from `socket` and runs one round of its loop.
    func deliver(_ bytes: [UInt8], from socket: UDPSocket = Fuzz.server, _ expectation: Expectation) {
        self.expectation = expectation
        fired = false
        guard (try? socket.send(bytes, to: (client.socket as! UDPSocket).local)) == true else { return }
        // Loopback delivers at once; wait until it has (never long) so that the round reads it.
        var ready = pollfd(fd: client.socket.descriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&ready, 1, 1000)
        round()
        self.expectation = .nothing
        // Refusals and relay offers are always reported.
        if case .message(let message, certain: true) = expectation, !fired {
            switch message.body {
            case .refused, .relays: fail("an authentic \(message.body) went unreported")
            default: break
            }
        }
    }

    func round() {
        try? loop.run()
        drain()
    }

    /// Reads what the client sent to the server: the nonce of its registers (a cookie answers one).
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while let (count, _) = (try? Fuzz.server.receive(into: &buffer)) ?? nil {
            guard let message = try? ControlMessage(authenticating: Array(buffer[..<count]), key: Fuzz.controlKey) else {
                fail("the client sent what the server cannot read")
            }
            if case .register(let cookie, _, _, _) = message.body {
                registerNonce = message.nonce
                registers.append(cookie)
            }
        }
        // The stranger socket hears nothing from the client, but keep it empty all the same.
        while (try? Fuzz.stranger.receive(into: &buffer)) ?? nil != nil {}
    }

    func seal(_ type: UInt8, _ body: [UInt8], party: UInt64 = FuzzParty.id, skew: Int64 = 0, sender: MemberKey = FuzzParty.server,
              key: [UInt8] = Fuzz.controlKey) -> [UInt8] {
        Fuzz.counter &+= 1
        let timestamp = UInt64(Int64(WallClock.unixMillis()) + skew)
        return sealControl(type: type, body: body, party: party, timestamp: timestamp, nonce: Fuzz.counter, sender: sender, key: key)
    }

    func message(_ body: ControlMessage.Body) -> [UInt8] {
        Fuzz.counter &+= 1
        return ControlMessage(partyID: FuzzParty.id, timestampMillis: WallClock.unixMillis(), nonce: Fuzz.counter, sender: FuzzParty.server,
                              body: body).encoded(key: Fuzz.controlKey)
    }

    /// What the client must make of a sealed datagram it must accept (nothing when the body is no message).
    func accepted(_ bytes: [UInt8], certain: Bool = true) -> Expectation {
        guard let message = try? ControlMessage(authenticating: bytes, key: Fuzz.controlKey) else { return .nothing }
        return .message(message, certain: certain)
    }

    func record(_ reader: inout FuzzReader, key: MemberKey, certificate: [UInt8]) -> MemberRecord {
        MemberRecord(key: key, nat: NATType(wireValue: reader.u8() % 6)!, candidates: candidates(&reader), certificate: certificate)
    }

    func candidates(_ reader: inout FuzzReader) -> [Candidate] {
        (0..<Int(reader.u8() % 9)).map { _ in Candidate(Candidate.Kind(rawValue: reader.u8() % 3 + 1)!, endpoint(&reader)) }
    }

    func endpoint(_ reader: inout FuzzReader) -> Endpoint {
        if reader.u8() & 1 == 0 { return Endpoint(.v4(IPv4Address(UInt32(truncatingIfNeeded: reader.u64()))), reader.u16()) }
        var bytes = reader.bytes(16)
        bytes += [UInt8](repeating: 0, count: 16 - bytes.count)
        return Endpoint(.v6(IPv6Address(bytes: bytes)!), reader.u16())
    }

    /// A member key the input picks: one of the party's, one the client knows, or any.
    func memberKey(_ reader: inout FuzzReader) -> MemberKey {
        let pick = Int(reader.u8())
        if pick < 128 { return FuzzParty.keys[pick % FuzzParty.count] }
        let known = client.members.keys.sorted()
        if pick < 192, !known.isEmpty { return known[pick % known.count] }
        var bytes = reader.bytes(32)
        bytes += [UInt8](repeating: 0, count: 32 - bytes.count)
        return MemberKey(bytes)!
    }

    func step(_ reader: inout FuzzReader) {
        let operation = reader.u8() % 9
        defer { trace("op \(operation): state \(client.state), \(client.members.count) members, dropped \(client.dropped), registers \(registers.count)") }
        switch operation {
        case 0:
            deliver(reader.chunk(), .nothing)
        case 1:
            let bytes = seal(reader.u8(), reader.chunk())
            last = bytes
            deliver(bytes, accepted(bytes))
        case 2:
            let flags = reader.u8(), skew = reader.u8()
            let type = reader.u8(), body = reader.chunk()
            if flags & 0x40 != 0, let last {
                // A replay of the last sealed message: taken once, never again.
                deliver(last, .nothing)
                return
            }
            let magnitude = Int64(skew & 7) * 10_000
            let bytes = seal(type, body, party: flags & 1 != 0 ? FuzzParty.id ^ 1 : FuzzParty.id, skew: skew & 8 != 0 ? -magnitude : magnitude,
                             sender: flags & 2 != 0 ? FuzzParty.keys[1] : FuzzParty.server,
                             key: flags & 4 != 0 ? FuzzParty.controlKeys[1] : Fuzz.controlKey)
            let refused = flags & 0x17 != 0 || magnitude > 30_000
            // A datagram from another source never reaches the replay window: not one to replay.
            if flags & 0x10 == 0 { last = bytes }
            deliver(bytes, from: flags & 0x10 != 0 ? Fuzz.stranger : Fuzz.server,
                    refused ? .nothing : accepted(bytes, certain: magnitude < 30_000))
        case 3, 4:
            let signing = operation == 4
            let event = reader.u8() % 4, revision = reader.u64()
            var certificate = reader.chunk()
            if signing { certificate = FuzzParty.signed(certificate) }
            // The record's key: the certificate's member (where the input has one), or one the input picks.
            let key = reader.u8() & 1 == 0 && certificate.count >= 44 ? MemberKey(Array(certificate[12..<44]))! : memberKey(&reader)
            var body = [event] + be64(revision) + key.bytes + [reader.u8() % 6]
            let list = candidates(&reader)
            body.append(UInt8(list.count))
            for candidate in list {
                var writer = ByteWriter()
                writer.u8(candidate.kind.rawValue); writer.endpoint(candidate.endpoint)
                body += writer.bytes
            }
            body += chunk(certificate)
            let bytes = seal(0x82, body)
            deliver(bytes, accepted(bytes))
        case 5:
            var cookie = reader.bytes(ControlNotice.cookieCount)
            cookie += [UInt8](repeating: 0, count: ControlNotice.cookieCount - cookie.count)
            let answering = reader.u8() & 1 == 0
            let nonce = answering ? registerNonce : reader.u64()
            let registering = client.state != .registered && nonce == registerNonce
            registers = []
            deliver(ControlNotice.cookie(nonce: nonce, cookie: cookie).encoded(), .nothing)
            if registering {
                guard registers == [cookie] else { fail("a cookie for the register just sent did not bring it again with the cookie") }
            } else if !registers.isEmpty {
                fail("a cookie for another register made the client register")
            }
        case 6:
            let body: ControlMessage.Body
            switch reader.u8() % 6 {
            case 0:
                body = .registered(epoch: reader.u64(), revision: reader.u64(), heartbeatSeconds: reader.u16(), observed: endpoint(&reader),
                                   others: reader.u16())
            case 1:
                let flags = reader.u8()
                body = .heartbeatAck(epoch: flags & 1 == 0 ? client.epoch ?? 0 : reader.u64(),
                                     revision: flags & 2 == 0 ? client.revision : reader.u64())
            case 2:
                let key = memberKey(&reader)
                body = .punch(peer: record(&reader, key: key, certificate: []), startMillis: reader.u64())
            case 3:
                let peer = memberKey(&reader)
                let offers = (0..<Int(reader.u8() % 10)).map { _ in
                    let token = reader.u8() & 1 == 0 ? reader.bytes(RelayToken.count) : reader.chunk()
                    var key = reader.bytes(32)
                    key += [UInt8](repeating: 0, count: 32 - key.count)
                    let mask = Keys.replyKeyMask(controlKey: Fuzz.controlKey, token: Array(token.prefix(255)))
                    return RelayOffer(service: endpoint(&reader), allocations: reader.u16(), capacity: reader.u16(), token: token,
                                      replyKey: zip(key, mask).map { $0 ^ $1 })
                }
                body = .relays(peer: peer, offers: offers)
            case 4:
                body = .refused(ControlMessage.Refusal(rawValue: reader.u8() % 6 + 1)!)
            default:
                let index = Int(reader.u8()) % FuzzParty.count
                let event = ControlMessage.MemberEvent(rawValue: reader.u8() % 4)!
                let revision = reader.u8() & 1 == 0 ? client.revision &+ 1 : reader.u64()
                body = .member(event: event, record: record(&reader, key: FuzzParty.keys[index], certificate: FuzzParty.certificates[index]),
                               revision: revision)
            }
            let bytes = message(body)
            last = bytes
            deliver(bytes, accepted(bytes))
        case 7:
            clock.advance(by: .milliseconds(Int(reader.u16()) * 10))
            round()
        default:
            switch reader.u8() % 4 {
            case 0: client.update(nat: NATType(wireValue: reader.u8() % 6)!, candidates: candidates(&reader))
            case 1: client.requestPunch(with: memberKey(&reader))
            case 2: client.requestRelay(with: memberKey(&reader))
            default: client.stop()
            }
            drain()
        }
    }

    /// What the client keeps: members other than itself, each with a certificate that verifies and
    /// exactly the prefixes it grants.
    func check() {
        for (key, record) in client.members {
            guard key == record.key, key != FuzzParty.keys[Fuzz.me], verifiedPrefixes(record) == record.addresses else {
                fail("member \(key) kept without a valid certificate's grant")
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var reader = FuzzReader(Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)))
    // The decoders alone, on the whole input as one datagram.
    reader.data.withUnsafeBytes { raw in
        _ = ControlNotice(decoding: raw)
        _ = try? ControlMessage(authenticating: raw, key: Fuzz.controlKey)
    }
    guard let run = try? Run() else { fail("no client") }
    var steps = 0
    while !reader.isEmpty, steps < 48 {
        run.step(&reader)
        steps += 1
    }
    run.check()
    return 0
}

/// Seeds: a session as a server would run it, and each operation on valid material.
func seeds() -> [(String, [UInt8])] {
    let me = FuzzParty.keys[0], other = FuzzParty.keys[1]
    let endpointV4: [UInt8] = [0] + be64(0xC000_0201) + [0xCA, 0x6C]
    let memberBody = [UInt8(1)] + be64(1) + other.bytes + [3, 1, 2, 4, 198, 51, 100, 7, 0xCA, 0x6C] + chunk(FuzzParty.certificates[1])
    let unsigned = Array(FuzzParty.certificates[2].dropLast(Crypto.signatureCount))
    let token = RelayToken(side: 0, address: .v4(IPv4Address(198, 51, 100, 7)), expiresAt: UInt64.max, partyID: FuzzParty.id,
                           pairID: Keys.pairID(party: FuzzParty.id, me, other)).encoded(key: [UInt8](repeating: 7, count: 32))
    let session: [UInt8] =
        [6, 0] + be64(42) + be64(1) + [0, 10] + endpointV4 + [0, 1]           // registered
        + [6, 5, 1, 1, 0, 1, 1, 0, 0] + be64(0x0A00_0002) + [0xCA, 0x6C]      // member 1 joins
        + [6, 2, 1, 2, 1, 1, 0] + be64(0xC633_6407) + [0xCA, 0x6C] + be64(1)  // punch with member 1
        + [6, 3, 1, 1, 0] + token + [UInt8](repeating: 9, count: 32) + endpointV4 + [0, 3, 0, 100]  // relays
        + [6, 1, 0]                                                           // heartbeat ack
        + [7, 0x03, 0xE8]                                                     // 10 s
        + [6, 4, 0]                                                           // register again
    return [
        ("session", session),
        ("raw-version", [0] + chunk([0x4C, 0x43, 1, 0x7F, 1, 1])),
        ("sealed-member", [1, 0x82] + chunk(memberBody)),
        ("sealed-relays", [1, 0x84] + chunk(other.bytes + [1, 4, 198, 51, 100, 7, 0x0D, 0x05, 0, 1, 0, 10, UInt8(token.count)] + token
                                               + [UInt8](repeating: 9, count: 32))),
        ("header-variants", [1, 0x85] + chunk(be64(0) + be64(0)) + [2, 0x40, 0, 0x85] + chunk([]) + [2, 0x09, 0x04, 0x86] + chunk([1])),
        ("certificate", [3, 1] + be64(1) + chunk(FuzzParty.certificates[1]) + [0, 0, 0]),
        ("certificate-signed", [4, 1] + be64(1) + chunk(unsigned) + [0, 0, 0]),
        ("cookie", [5] + [UInt8](repeating: 0xC0, count: 16) + [0, 7, 0, 100, 5] + [UInt8](repeating: 0xC1, count: 16) + [0]),
        ("agent", [8, 0, 2, 1, 2, 0] + be64(0xC0A8_0102) + [0xCA, 0x6C] + [8, 1, 1, 8, 2, 1, 8, 3]),
    ]
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("ClientFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    if writeSeedsIfAsked(seeds) { return 0 }
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { fuzz($0, $1) }
}
#else
@main struct Replay {
    static func main() {
        replayMain(seeds: seeds) { bytes in _ = bytes.withUnsafeBufferPointer { fuzz($0.baseAddress, $0.count) } }
    }
}
#endif
