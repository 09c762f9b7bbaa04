// libFuzzer target for the control protocol: `make fuzz-control` (part of `make fuzz`).
// Each input is used twice: as a raw datagram to the decoder and the server core (the attacker's
// view: nothing authentic), and as `type ‖ body` of a message sealed with a member's control key,
// so the body decoder and the server's dispatch run on authenticated garbage too (a member's view:
// the member has a valid certificate and is registered).
// Without -D FUZZING it is a replayer: `ControlFuzz FILE…`.
#if canImport(Glibc)
import Glibc
#endif
import Control
import Net
import Rendezvous
import Time

enum Fuzz {
    static let partyID = Keys.partyID(name: "fuzz")
    static let serverPrivate = [UInt8](repeating: 0x5E, count: 32)
    static let memberPrivate = [UInt8](repeating: 0x11, count: 32)
    static let server = MemberKey(Crypto.publicKey(ofPrivate: serverPrivate))!
    static let member = MemberKey(Crypto.publicKey(ofPrivate: memberPrivate))!
    static let controlKey = Keys.controlKey(privateKey: memberPrivate, publicKey: server.bytes, member: member, server: server, party: partyID)!
    static let authority = Crypto.signingKeyPair(seed: [UInt8](repeating: 0xCA, count: 32))
    static let certificate = try! MemberCertificate.issue(party: partyID, member: member, notBefore: 0, notAfter: UInt64.max,
                                                          addresses: [IPPrefix("100.64.0.2/24")!], subnets: [], name: "fuzz",
                                                          authority: authority.secretKey).encoded
    nonisolated(unsafe) static let core: ControlCore = {
        let core = ControlCore(privateKey: serverPrivate, relays: [Endpoint("192.0.2.1:40000")!], relayKey: Keys.relayKey(secret: [1, 2, 3]))
        core.addParty(name: "fuzz", authority: authority.publicKey)
        return core
    }()
    nonisolated(unsafe) static var counter: UInt64 = 0

    static func seal(type: UInt8, body: [UInt8], wall: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        writer.raw([0x4C, 0x43, ControlMessage.version, type]); writer.u64(partyID); writer.u64(wall); writer.u64(counter); writer.raw(member.bytes)
        writer.u16(UInt16(body.count)); writer.raw(body)
        var sealed = writer.bytes + [UInt8](repeating: 0, count: 32)
        let signed = sealed.count - 32
        sealed.withUnsafeMutableBytes { raw in
            Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<signed]), key: controlKey,
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[signed...]))
        }
        return sealed
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let buffer = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    Fuzz.counter &+= 1
    let source = Endpoint(.v4(IPv4Address(198, 51, 100, UInt8(truncatingIfNeeded: Fuzz.counter))), 40_000)
    let wall = WallClock.unixMillis()
    // The attacker's view.
    _ = try? ControlMessage(authenticating: buffer, key: Fuzz.controlKey)
    _ = ControlNotice(decoding: buffer)
    _ = Fuzz.core.handle(buffer, from: source, now: Int64(Fuzz.counter) * 1_000_000, wall: wall)
    // The member's view: first byte type, the rest the body; registered first (once per input, so
    // that every input is checked as a known member's).
    guard size >= 1, size <= 1000 else { return 0 }
    var register = ByteWriter()
    register.raw([UInt8](repeating: 0, count: ControlNotice.cookieCount)); register.u8(0); register.u8(0)
    register.u16(UInt16(Fuzz.certificate.count)); register.raw(Fuzz.certificate)
    Fuzz.counter &+= 1
    _ = Fuzz.seal(type: 0x01, body: register.bytes, wall: wall).withUnsafeBytes {
        Fuzz.core.handle($0, from: source, now: Int64(Fuzz.counter) * 1_000_000, wall: wall)
    }
    Fuzz.counter &+= 1
    let sealed = Fuzz.seal(type: buffer[0], body: Array(buffer[1...]), wall: wall)
    if let message = try? ControlMessage(authenticating: sealed, key: Fuzz.controlKey) {
        // What decodes re-encodes to a message that decodes to the same thing.
        if (try? ControlMessage(authenticating: message.encoded(key: Fuzz.controlKey), key: Fuzz.controlKey)) != message {
            fatalError("re-encoding changed the message: \(message)")
        }
    }
    let replies = sealed.withUnsafeBytes { Fuzz.core.handle($0, from: source, now: Int64(Fuzz.counter) * 1_000_000, wall: wall) }
    for reply in replies {
        guard let decoded = try? ControlMessage(authenticating: reply.bytes, key: Fuzz.controlKey), decoded.sender == Fuzz.server else {
            fatalError("the server sent a reply it cannot decode itself")
        }
    }
    return 0
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("ControlFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { fuzz($0, $1) }
}
#else
@main struct Replay {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { print("\(path): cannot open"); continue }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = fread(&chunk, 1, chunk.count, file)
                if count <= 0 { break }
                bytes += chunk[..<count]
            }
            fclose(file)
            _ = bytes.withUnsafeBufferPointer { fuzz($0.baseAddress, $0.count) }
            print("\(path): \(bytes.count) bytes, no crash; counters \(Fuzz.core.counters)")
        }
    }
}
#endif
