// libFuzzer target for the punch messages that reach the WireGuard port: `make fuzz-punch`.
// Each input is a program run against a fresh PunchSession (member 0 punching member 1) and a fresh
// PunchDriver (sessions with members 1 and 2, on a port that records what it sends):
//   0 a burst, 1 probes, 2 raw datagrams, 3 messages authenticated by the peer with any kind,
//   session and nonce (one of ours, one of the input's, a replayed one), 4 any bytes with the peer's
//   MAC, 5 messages from member 2, 6 earlier datagrams again from another source, 7 raw IPv4 packets
//   as the raw port socket parses them, 8 time passing (the probe budget's window).
// Checked: the pin is set only by an authenticated ACK of the session echoing one of the nonces it
// sent, to the ACK's source, once, and never moves; an ACK is sent only to answer an authentic PUNCH,
// to its source, echoing its nonce, once per nonce; everything sent authenticates at the peer.
// Without -D FUZZING it is a replayer (`PunchFuzz FILE…`) and writes the seeds (`--seeds DIR`).
#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
import Net
import Time
@testable import Punch

enum Fuzz {
    /// Our key with member `i` (i = 1, 2), and member i's key with us (what it sends under).
    static let ours: [PairKey] = (0..<3).map { index in
        PairKey(localPrivateKey: FuzzParty.privateKeys[0], localPublicKey: FuzzParty.keys[0].bytes,
                remotePublicKey: FuzzParty.keys[max(1, index)].bytes)!
    }
    static let theirs: [PairKey] = (0..<3).map { index in
        PairKey(localPrivateKey: FuzzParty.privateKeys[max(1, index)], localPublicKey: FuzzParty.keys[max(1, index)].bytes,
                remotePublicKey: FuzzParty.keys[0].bytes)!
    }
    static let session: UInt64 = 0x1122_3344_5566_7788
    nonisolated(unsafe) static let clock = VirtualClock()
}

func fail(_ what: String) -> Never { fatalError("PunchFuzz: \(what)") }

/// A port that records what is sent and hands out what the target queued.
final class FakePort: PortSocket {
    var port: UInt16 { 51820 }
    var descriptor: Int32 { -1 }
    var queue: [PortDatagram] = []
    var sent: [([UInt8], Endpoint)] = []

    func send(_ payload: [UInt8], to destination: Endpoint) throws(SystemError) -> Bool {
        sent.append((payload, destination))
        return true
    }

    func receive() throws(SystemError) -> PortDatagram? { queue.isEmpty ? nil : queue.removeFirst() }
}

/// What one side of a pair has done, kept by the target to judge what the code under test does.
struct Model {
    let peer: Int
    var sent: [[UInt8]] = []
    var sentSet: Set<[UInt8]> = []
    var answered: Set<[UInt8]> = []
    var answeredOrder: [[UInt8]] = []
    var pinned: Endpoint?

    init(peer: Int) { self.peer = peer }

    /// A datagram sent toward the peer: it must authenticate there. PUNCHes are remembered;
    /// an ACK must answer `received` (an authentic PUNCH, from `source`) and be sent to `source`.
    @discardableResult
    mutating func record(_ bytes: [UInt8], to destination: Endpoint, answering received: PunchMessage?,
                         from source: Endpoint?) -> PunchMessage.Kind {
        guard let message = try? PunchMessage.decode(bytes, key: Fuzz.theirs[peer]) else { fail("sent what the peer cannot authenticate") }
        switch message.kind {
        case .punch:
            if message.session != Fuzz.session { fail("a PUNCH in another session") }
            sent.append(message.nonce)
            sentSet.insert(message.nonce)
        case .ack:
            guard let received, received.kind == .punch, received.nonce == message.nonce, received.session == message.session,
                  destination == source else { fail("an ACK that answers no PUNCH") }
            guard answered.insert(message.nonce).inserted else { fail("a PUNCH answered twice") }
            answeredOrder.append(message.nonce)
            if answeredOrder.count > 512 { answered.remove(answeredOrder.removeFirst()) }
        }
        return message.kind
    }

    /// Whether an authentic PUNCH with `nonce` must be answered.
    func mustAnswer(_ nonce: [UInt8]) -> Bool { !answered.contains(nonce) }

    /// A pin of `endpoint` after `received` from `source`: earned only by an ACK of our session
    /// echoing one of our nonces, to its source, when nothing was pinned.
    mutating func pin(_ endpoint: Endpoint, after received: PunchMessage?, from source: Endpoint) {
        guard pinned == nil else { fail("the pin moved from \(pinned!) to \(endpoint)") }
        guard let received, received.kind == .ack, received.session == Fuzz.session, sentSet.contains(received.nonce),
              endpoint == source else { fail("pinned \(endpoint) unearned") }
        pinned = endpoint
    }
}

final class Run {
    // Made per run: LeakSanitizer takes an IPv6 address held by a global for a leak.
    static func v6(_ last: UInt8) -> IPAddress { .v6(IPv6Address(bytes: [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [last])!) }
    let candidates = [Endpoint(.v4(IPv4Address(192, 0, 2, 10)), 51820), Endpoint(.v4(IPv4Address(198, 51, 100, 20)), 40000),
                      Endpoint(Run.v6(1), 51820)]
    lazy var sources = candidates + [Endpoint(.v4(IPv4Address(203, 0, 113, 5)), 1234), Endpoint(.v4(IPv4Address(192, 0, 2, 10)), 9999),
                                     Endpoint(Run.v6(2), 51820)]
    /// Bursts and probes left: each sends a PUNCH per candidate from the session and the driver, and
    /// more of them reach no new state.
    var sends = 6
    lazy var session = PunchSession(key: Fuzz.ours[1], session: Fuzz.session, candidates: candidates)
    var model = Model(peer: 1)
    let port = FakePort()
    let driver: PunchDriver<Int, UDPSocket>
    var models = [1: Model(peer: 1), 2: Model(peer: 2)]
    /// Datagrams received so far (for replays).
    var history: [[UInt8]] = []

    init() {
        driver = PunchDriver(socket: port, clock: Fuzz.clock)
        for peer in [1, 2] {
            driver.start(peer, PunchSession(key: Fuzz.ours[peer], session: Fuzz.session, candidates: candidates),
                         observed: candidates[1].address)
        }
    }

    func source(_ reader: inout FuzzReader) -> Endpoint {
        let pick = reader.u8()
        if pick < 240 { return sources[Int(pick) % sources.count] }
        return Endpoint(.v4(IPv4Address(UInt32(truncatingIfNeeded: reader.u64()))), reader.u16())
    }

    /// `bytes` from `source`, to the session and to the driver.
    func receive(_ bytes: [UInt8], from source: Endpoint) {
        receiveSession(bytes, from: source)
        receiveDriver(bytes, from: source)
    }

    /// The session alone: every effect judged by the model.
    func receiveSession(_ bytes: [UInt8], from source: Endpoint) {
        history.append(bytes)
        if history.count > 64 { history.removeFirst() }
        let message = try? PunchMessage.decode(bytes, key: Fuzz.ours[1])
        let before = session.pinned
        let mustAnswer = message.map { $0.kind == .punch && model.mustAnswer($0.nonce) } ?? false
        var answeredNow = false
        for effect in session.receive(bytes, from: source) {
            switch effect {
            case .send(let sent, let destination):
                if model.record(sent, to: destination, answering: message, from: source) == .ack { answeredNow = true }
            case .pin(let endpoint):
                model.pin(endpoint, after: message, from: source)
            }
        }
        if mustAnswer != answeredNow { fail(mustAnswer ? "an authentic PUNCH went unanswered" : "answered what needs no answer") }
        if session.pinned != (before ?? model.pinned) { fail("the pin changed without a pin effect") }
        if session.candidates.count > 32 || session.learned.count > 4 { fail("candidates unbounded") }
    }

    /// The driver: routes by the sender's key id to the session of members 1 and 2.
    func receiveDriver(_ bytes: [UInt8], from source: Endpoint) {
        port.queue = [PortDatagram(payload: bytes, source: source, destination: Endpoint(.v4(IPv4Address(0)), 51820))]
        collect { () throws(SystemError) in try driver.receive() }
    }

    /// Runs a driver call, then judges what it sent and pinned.
    func collect(_ body: () throws(SystemError) -> (pinned: [(Int, Endpoint)], other: [PortDatagram])) {
        let received = port.queue.last
        port.sent = []
        let result: (pinned: [(Int, Endpoint)], other: [PortDatagram])
        do { result = try body() } catch { fail("the driver failed: \(error)") }
        // The incoming datagram as each pair's key authenticates it (decoded only when needed).
        var decodings: [Int: PunchMessage?] = [:]
        func decoded(_ peer: Int) -> PunchMessage? {
            if let known = decodings[peer] { return known }
            let message = received.flatMap { try? PunchMessage.decode($0.payload, key: Fuzz.ours[peer]) }
            decodings[peer] = message
            return message
        }
        for (bytes, destination) in port.sent {
            // The receiver's key id follows the name, version and sender's id.
            let at = (bytes.starts(with: Array("LANRAGE_PUNCH_ACK".utf8)) ? 18 : 14) + 1 + KeyID.byteCount
            let peer = bytes.count >= at + KeyID.byteCount && Array(bytes[at..<(at + KeyID.byteCount)]) == Fuzz.theirs[2].local.bytes ? 2 : 1
            models[peer]!.record(bytes, to: destination, answering: decoded(peer), from: received?.source)
        }
        for (peer, endpoint) in result.pinned {
            models[peer]!.pin(endpoint, after: decoded(peer), from: received!.source)
        }
        for peer in [1, 2] where driver.pinned(peer) != models[peer]!.pinned { fail("the driver's pin and its report differ") }
        if let received, PunchMessage.sender(of: received.payload) == nil, result.other != [received] { fail("a non-punch datagram was kept") }
    }

    /// A message of a member to us as the input describes it: kind, session (ours or another),
    /// nonce (one its receiver sent, by index, or the input's).
    struct Template {
        var kind: PunchMessage.Kind
        var session: UInt64
        var pick: Int?
        var nonce: [UInt8]

        init(_ reader: inout FuzzReader) {
            kind = reader.u8() & 1 == 0 ? .ack : .punch
            let other = reader.u8() & 1 != 0, session = reader.u64()
            self.session = other ? session : Fuzz.session
            let pick = reader.u16()
            self.pick = pick & 1 == 0 ? Int(pick >> 1) : nil
            let bytes = reader.bytes(PunchMessage.nonceCount)
            nonce = bytes + [UInt8](repeating: 0, count: PunchMessage.nonceCount - bytes.count)
        }

        /// The message from member `peer`, the nonce picked among `sent`.
        func bytes(from peer: Int, sent: [[UInt8]]) -> [UInt8] {
            let nonce = pick.flatMap { sent.isEmpty ? nil : sent[$0 % sent.count] } ?? self.nonce
            return PunchMessage(kind: kind, sender: Fuzz.theirs[peer].local, receiver: Fuzz.theirs[peer].remote, session: session, nonce: nonce)
                .encoded(with: Fuzz.theirs[peer])
        }
    }

    func step(_ reader: inout FuzzReader) {
        let operation = reader.u8() % 9
        defer {
            trace("op \(operation): pinned \(session.pinned.map(\.description) ?? "-"), sent \(model.sent.count), driver pins "
                  + "\(driver.pinned(1).map(\.description) ?? "-") \(driver.pinned(2).map(\.description) ?? "-")")
        }
        switch operation {
        case 0 where sends > 0:
            sends -= 1
            for case .send(let bytes, let destination) in session.burst() { model.record(bytes, to: destination, answering: nil, from: nil) }
            let peer = Int(reader.u8() % 2) + 1
            collect { driver.burst(peer); return ([], []) }
        case 0:
            _ = reader.u8()
        case 1:
            sends -= 1
            let destinations = (0..<Int(reader.u8() % 8)).map { _ in source(&reader) }
            guard sends >= 0 else { return }
            for case .send(let bytes, let destination) in session.probe(destinations) {
                model.record(bytes, to: destination, answering: nil, from: nil)
            }
            collect { driver.probe(1, destinations); return ([], []) }
        case 2:
            let from = source(&reader)
            receive(reader.chunk(), from: from)
        case 3, 5:
            // The same message for the session and the driver, each with nonces it sent itself.
            let peer = operation == 3 ? 1 : 2
            let from = source(&reader)
            let template = Template(&reader)
            receiveSession(template.bytes(from: peer, sent: peer == 1 ? model.sent : []), from: from)
            receiveDriver(template.bytes(from: peer, sent: models[peer]!.sent), from: from)
        case 4:
            let from = source(&reader)
            var bytes = reader.chunk()
            bytes += Fuzz.theirs[1].mac(bytes[...])
            receive(bytes, from: from)
        case 6:
            let pick = Int(reader.u8())
            let from = source(&reader)
            if !history.isEmpty { receive(history[pick % history.count], from: from) }
        case 7:
            let packet = reader.chunk()
            if let datagram = RawPortSocket.parse(packet[...]) { receive(datagram.payload, from: datagram.source) }
        default:
            Fuzz.clock.advance(by: .seconds(Int(reader.u16())))
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    // The decoders alone, on the whole input.
    _ = PunchMessage.sender(of: input)
    for key in Fuzz.ours { _ = try? PunchMessage.decode(input, key: key) }
    _ = RawPortSocket.parse(input[...])
    Fuzz.clock.now = 0
    let run = Run()
    var reader = FuzzReader(input)
    var steps = 0
    while !reader.isEmpty, steps < 32 {
        run.step(&reader)
        steps += 1
    }
    return 0
}

/// Seeds: a punch that pins both ways, and each operation on valid material.
func seeds() -> [(String, [UInt8])] {
    let punch = PunchMessage(kind: .punch, sender: Fuzz.theirs[1].local, receiver: Fuzz.theirs[1].remote, session: Fuzz.session,
                             nonce: [UInt8](repeating: 0x55, count: 16)).encoded(with: Fuzz.theirs[1])
    // An IPv4 packet from 198.51.100.20:40000 to port 51820 carrying that PUNCH.
    let udp = [0x9C, 0x40, 0xCA, 0x6C, UInt8((8 + punch.count) >> 8), UInt8((8 + punch.count) & 0xFF), 0, 0] + punch
    let total = 20 + udp.count
    let packet: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 20, 192, 0, 2, 1] + udp
    let ours = [UInt8](repeating: 0, count: 8)  // session: ours (the flag's low bit clear)
    let mine = [UInt8](repeating: 0x77, count: 16)
    return [
        // A burst; an ACK from candidate 0 echoing our first nonce; a PUNCH of our session from
        // candidate 1; that PUNCH again from a stranger.
        ("pin", [0, 0] + [3, 0, 0, 0] + ours + [0, 0] + mine + [3, 1, 1, 0] + ours + [0, 1] + mine + [6, 1, 3]),
        ("probe-ack", [1, 2, 3, 4] + [3, 3, 0, 0] + ours + [0, 2] + mine),
        ("other-session", [3, 1, 1, 1] + be64(99) + [0, 1] + [UInt8](repeating: 0x66, count: 16)),
        ("member-2", [0, 1] + [5, 0, 0, 0] + ours + [0, 0] + mine + [5, 1, 1, 0] + ours + [0, 1] + mine),
        ("raw", [2, 0] + chunk(punch)),
        ("mac", [4, 1] + chunk(Array(punch.dropLast(PunchMessage.macCount)))),
        ("packet", [7] + chunk(packet)),
        ("budget", [0, 0, 0, 0, 0, 0, 8, 0, 61, 0, 0]),
    ]
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("PunchFuzz_main")
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
