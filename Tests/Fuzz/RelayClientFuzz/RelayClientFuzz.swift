// libFuzzer target for the relays' answers as the agent sees them: `make fuzz-relay-client`.
// The relay messages themselves first: the input decoded under a reply key and under none, and
// sealed with the reply key (any type and body behind a valid tag), re-encoding what decodes.
// Then the input is a program run against a fresh RelayClient (the agent's, on its own event loop)
// with a socket on loopback that plays the relays:
//   0 allocate under an offer (fixed ones, one whose service is another socket, or the input's
//     token and reply key); 1 release a grant; 2 raw datagrams from the relay; 3 answers sealed
//     with a key the input picks (the request's reply key, another's, the relay key), for a nonce
//     it picks, well-formed or any body; 4 the same from another source; 5 a latch for a grant;
//     6 an earlier datagram again.
// Checked: a request is answered once, and only by an authentic answer for its nonce from its
// offer's service: a grant only by `allocated(granted)` with the port it names; latches
// authenticate under the grant's reply key and count up.
// Without -D FUZZING it is a replayer (`RelayClientFuzz FILE…`) and writes the seeds (`--seeds DIR`).
#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import FuzzSupport
import Net
import Relay
import Rendezvous
import Time

enum Fuzz {
    static let relayKey = Keys.relayKey(secret: Array("fuzzing relay".utf8))
    nonisolated(unsafe) static let relay = try! UDPSocket(binding: Endpoint("127.0.0.1:0")!)
    nonisolated(unsafe) static let stranger = try! UDPSocket(binding: Endpoint("127.0.0.1:0")!)
    /// Always readable: its handler ends the loop's round, so `run()` makes exactly one round.
    static let wake: Int32 = {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0, write(ends[1], [UInt8(1)], 1) == 1 else { fatalError("pipe") }
        return ends[0]
    }()
    /// Offers as the control server makes them: a token for sides 0 and 1 of a pair at the relay,
    /// and one at a service the other socket plays.
    static let offers: [RelayOffer] = (0..<3).map { index in
        let token = RelayToken(side: UInt8(index & 1), address: .v4(IPv4Address(127, 0, 0, 1)), expiresAt: UInt64.max,
                               partyID: FuzzParty.id, pairID: [UInt8](repeating: UInt8(index), count: 16)).encoded(key: relayKey)
        return RelayOffer(service: index == 2 ? stranger.local : relay.local, allocations: 0, capacity: 100, token: token,
                          replyKey: Keys.relayReplyKey(relayKey: relayKey, token: token))
    }
}

func fail(_ what: String) -> Never { fatalError("RelayClientFuzz: \(what)") }

final class Run {
    struct Request {
        var offer: RelayOffer
        var allocating: Bool
        /// Callbacks waiting on it (a second allocation with the same offer joins the first).
        var waiting: Int
    }

    let loop: EventLoop
    let client: RelayClient
    var requests: [UInt64: Request] = [:]
    var nonces: [UInt64] = []
    var grants: [RelayGrant] = []
    var latchCounter: UInt64 = 0
    /// The datagram being delivered, and whether it came from the relay socket.
    var delivering: (bytes: [UInt8], from: Endpoint)?
    var history: [[UInt8]] = []

    init() throws {
        loop = try EventLoop()
        client = try RelayClient(loop: loop, clock: SystemClock())
        try loop.register(Fuzz.wake) { [unowned loop] in loop.stop() }
        drain()
    }

    /// An allocation asked under `asked` finished: only an authentic answer for its request's nonce,
    /// from its service, finishes it. (An allocation that joined a request under way asked with an
    /// offer of the same token and service; its grant carries its own offer.)
    func finished(_ nonce: UInt64, _ grant: RelayGrant?, asked: RelayOffer) {
        guard let request = requests[nonce], request.allocating, request.waiting > 0 else { fail("an allocation finished twice") }
        requests[nonce]!.waiting -= 1
        guard let (bytes, from) = delivering, from == request.offer.service,
              let message = try? bytes.withUnsafeBytes({ try RelayMessage(decoding: $0, key: request.offer.replyKey) }) else {
            fail("an allocation finished by no authentic answer from its relay")
        }
        switch message {
        case .allocated(nonce, .granted, let port, _):
            guard let grant, grant.offer == asked, grant.endpoint == Endpoint(request.offer.service.address, port) else {
                fail("a grant that is not the relay's")
            }
            grants.append(grant)
        case .allocated(nonce, _, _, _), .released(nonce):
            if grant != nil { fail("granted by a refusal") }
        default:
            fail("finished by \(message)")
        }
    }

    /// Reads what the client sent to the relays: the nonces of its requests under `offer`.
    @discardableResult
    func drain(offer: RelayOffer? = nil, allocating: Bool = true) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 2048)
        var sent = false
        for socket in [Fuzz.relay, Fuzz.stranger] {
            while let (count, _) = (try? socket.receive(into: &buffer)) ?? nil {
                guard count >= 12, buffer[0] == RelayMessage.magic.0, buffer[1] == RelayMessage.magic.1,
                      buffer[3] == (allocating ? 0x01 : 0x05) else { continue }
                let nonce = buffer[4..<12].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                if let offer, requests[nonce] == nil {
                    requests[nonce] = Request(offer: offer, allocating: allocating, waiting: allocating ? 1 : 0)
                    nonces.append(nonce)
                    sent = true
                }
            }
        }
        return sent
    }

    func deliver(_ bytes: [UInt8], from socket: UDPSocket) {
        history.append(bytes)
        delivering = (bytes, socket.local)
        defer { delivering = nil }
        guard (try? socket.send(bytes, to: Endpoint(.v4(IPv4Address(127, 0, 0, 1)), (client.sockets[0].socket as! UDPSocket).local.port))) == true else { return }
        var ready = pollfd(fd: client.sockets[0].socket.descriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&ready, 1, 1000)
        try? loop.run()
        drain()
    }

    func offer(_ reader: inout FuzzReader) -> RelayOffer {
        let pick = Int(reader.u8())
        if pick < 192 { return Fuzz.offers[pick % Fuzz.offers.count] }
        let token = reader.chunk()
        var key = reader.bytes(32)
        key += [UInt8](repeating: 0, count: 32 - key.count)
        return RelayOffer(service: Fuzz.relay.local, allocations: 0, capacity: 0, token: token, replyKey: key)
    }

    /// An answer for a nonce the input picks (one of the client's requests, or any), sealed with a
    /// key it picks, well-formed or any body.
    func answer(_ reader: inout FuzzReader) -> [UInt8] {
        let pick = reader.u16()
        let nonce = pick & 1 == 0 && !nonces.isEmpty ? nonces[Int(pick >> 1) % nonces.count] : reader.u64()
        let keyPick = reader.u8()
        let key: [UInt8]
        switch keyPick % 4 {
        case 0, 1: key = requests[nonce]?.offer.replyKey ?? Fuzz.offers[0].replyKey
        case 2: key = Fuzz.offers[Int(keyPick >> 2) % Fuzz.offers.count].replyKey
        default: key = Fuzz.relayKey
        }
        let form = reader.u8()
        switch form % 4 {
        case 0:
            let status = RelayMessage.AllocationStatus(rawValue: reader.u8() % 3)!
            return RelayMessage.allocated(nonce: nonce, status: status, port: reader.u16(), idleSeconds: reader.u16()).encoded(key: key)
        case 1:
            return RelayMessage.released(nonce: nonce).encoded(key: key)
        case 2:
            // Any type and body after the nonce, with a valid tag.
            let signed = [RelayMessage.magic.0, RelayMessage.magic.1, 1, reader.u8()] + be64(nonce) + reader.chunk()
            return signed + hmac(signed, key: key)
        default:
            return RelayMessage.latch(port: reader.u16(), counter: reader.u64()).encoded(key: key)
        }
    }

    func step(_ reader: inout FuzzReader) {
        let operation = reader.u8() % 7
        defer { trace("op \(operation): \(requests.count) requests, \(grants.count) grants") }
        switch operation {
        case 0:
            let offer = offer(&reader)
            let before = Set(nonces)
            var id: UInt64?
            client.allocate(offer) { [unowned self] grant in
                guard let id else { fail("answered before it was asked") }
                finished(id, grant, asked: offer)
            }
            if drain(offer: offer) {
                id = nonces.last
            } else if let joined = nonces.last(where: { requests[$0]?.allocating == true && requests[$0]?.waiting ?? 0 > 0
                                                        && requests[$0]?.offer.token == offer.token
                                                        && requests[$0]?.offer.service == offer.service }) {
                // The same offer is under way: this one waits on that request.
                requests[joined]!.waiting += 1
                id = joined
            } else {
                fail("an allocation neither sent nor joined (\(before.count) before)")
            }
        case 1:
            guard !grants.isEmpty else { return }
            let grant = grants[Int(reader.u8()) % grants.count]
            client.release(grant)
            _ = drain(offer: grant.offer, allocating: false)
        case 2:
            deliver(reader.chunk(), from: Fuzz.relay)
        case 3:
            deliver(answer(&reader), from: Fuzz.relay)
        case 4:
            deliver(answer(&reader), from: Fuzz.stranger)
        case 5:
            guard !grants.isEmpty else { return }
            let grant = grants[Int(reader.u8()) % grants.count]
            let latch = client.latch(grant)
            guard let message = try? latch.withUnsafeBytes({ try RelayMessage(decoding: $0, key: grant.offer.replyKey) }),
                  case .latch(grant.endpoint.port, let counter) = message, counter > latchCounter,
                  latch.withUnsafeBytes({ RelayMessage.looksLikeLatch($0) }) else {
                fail("a latch the relay cannot take")
            }
            latchCounter = counter
        default:
            let pick = Int(reader.u8())
            let socket = reader.u8() & 1 == 0 ? Fuzz.relay : Fuzz.stranger
            if !history.isEmpty { deliver(history[pick % history.count], from: socket) }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    let replyKey = Fuzz.offers[0].replyKey
    input.withUnsafeBytes { raw in
        _ = try? RelayMessage(decoding: raw, key: replyKey)
        _ = try? RelayMessage(decoding: raw, key: nil)
        _ = RelayMessage.looksLikeLatch(raw)
    }
    // The input behind a valid tag: what decodes re-encodes to the same message.
    if size >= 4, size <= RelayMessage.maximumCount - Crypto.tagCount {
        for key in [replyKey, Fuzz.relayKey] {
            let signed = input + hmac(input, key: key)
            guard let message = try? signed.withUnsafeBytes({ try RelayMessage(decoding: $0, key: key) }) else { continue }
            let again = try? message.encoded(key: key).withUnsafeBytes { try RelayMessage(decoding: $0, key: key) }
            if again != message { fail("re-encoding changed \(message)") }
        }
    }
    guard let run = try? Run() else { fail("no client") }
    var reader = FuzzReader(input)
    var steps = 0
    while !reader.isEmpty, steps < 32 {
        run.step(&reader)
        steps += 1
    }
    return 0
}

/// Seeds: an allocation granted, latched and released; a refusal; answers from the wrong place.
func seeds() -> [(String, [UInt8])] {
    [
        // allocate offer 0; granted (the request's key); latch; release; released.
        ("grant", [0, 0] + [3, 0, 0, 0, 0, 0, 0x9C, 0x41, 0, 30] + [5, 0] + [1, 0] + [3, 0, 2, 0, 1]),
        ("refused", [0, 1] + [3, 0, 0, 0, 0, 1]),
        ("joined", [0, 0, 0, 0] + [3, 0, 0, 0, 0, 0, 0x9C, 0x41, 0, 30]),
        ("other-service", [0, 2] + [3, 0, 0, 0, 0, 0, 0x9C, 0x41, 0, 30] + [4, 0, 0, 0, 0, 0, 0x9C, 0x41, 0, 30]),
        ("any-body", [0, 0] + [3, 0, 0, 0, 2, 0x02] + chunk([0, 0x9C, 0x41, 0, 30])),
        ("own-offer", [0, 200] + chunk([1, 2, 3]) + [UInt8](repeating: 0x42, count: 32) + [3, 0, 0, 0, 0, 0, 0x9C, 0x41, 0, 30]),
        ("raw", [2] + chunk(RelayMessage.allocated(nonce: 1, status: .granted, port: 40001, idleSeconds: 30).encoded(key: Fuzz.offers[0].replyKey))),
        ("replay", [0, 0] + [3, 0, 0, 0, 0, 0, 0x9C, 0x41, 0, 30] + [6, 0, 0]),
    ]
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("RelayClientFuzz_main")
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
