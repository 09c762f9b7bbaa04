// What the fuzz targets share: a reader that takes an input apart into operations, the replayer of
// the non-fuzzing builds, seed files, and one party with fixed keys and certificates.
#if canImport(Glibc)
import Glibc
#endif
import Net
import Rendezvous

/// Consumes a fuzz input front to back. Reads past the end give zeros (numbers) or fewer bytes,
/// so every input is a valid program of operations.
public struct FuzzReader {
    public let data: [UInt8]
    public private(set) var offset = 0

    public init(_ data: [UInt8]) { self.data = data }

    public var isEmpty: Bool { offset >= data.count }
    public var remaining: Int { max(0, data.count - offset) }

    public mutating func u8() -> UInt8 {
        guard offset < data.count else { return 0 }
        defer { offset += 1 }
        return data[offset]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }

    public mutating func u64() -> UInt64 { (0..<8).reduce(UInt64(0)) { value, _ in value << 8 | UInt64(u8()) } }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let end = min(data.count, offset + max(0, count))
        defer { offset = max(offset, end) }
        return offset < end ? Array(data[offset..<end]) : []
    }

    /// A length-prefixed chunk: u16 length, then that many bytes (fewer at the end of the input).
    public mutating func chunk() -> [UInt8] { bytes(Int(u16())) }

    public mutating func rest() -> [UInt8] { bytes(remaining) }
}

/// Big-endian length prefix of `bytes` as `FuzzReader.chunk` reads it (for seeds).
public func chunk(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count >> 8 & 0xFF), UInt8(bytes.count & 0xFF)] + bytes }

public func be64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) } }

/// The party every target uses: the authority, the control server's key, members 0…3 (0 is "us"
/// where a target plays one member), each with a certificate valid from 1970 to the end of time.
public enum FuzzParty {
    public static let name = "fuzz"
    public static let id = Keys.partyID(name: name)
    public static let authority = Crypto.signingKeyPair(seed: [UInt8](repeating: 0xCA, count: 32))
    public static let serverPrivate = [UInt8](repeating: 0x5E, count: 32)
    public static let server = MemberKey(Crypto.publicKey(ofPrivate: serverPrivate))!
    public static let count = 4

    public static let privateKeys: [[UInt8]] = (0..<count).map { index in
        var key = [UInt8](repeating: 0x70, count: 32)
        key[1] = UInt8(index)
        return key
    }
    public static let keys: [MemberKey] = privateKeys.map { MemberKey(Crypto.publicKey(ofPrivate: $0))! }

    /// Member `index`'s certificate: 100.64.0.(index+1)/24, and 10.(index).0.0/16 behind it.
    public static let certificates: [[UInt8]] = (0..<count).map { index in
        try! MemberCertificate.issue(party: id, member: keys[index], notBefore: 0, notAfter: UInt64.max,
                                     addresses: [IPPrefix(.v4(IPv4Address(100, 64, 0, UInt8(index + 1))), 24)!],
                                     subnets: [IPPrefix(.v4(IPv4Address(10, UInt8(index), 0, 0)), 16)!], name: "m\(index)",
                                     authority: authority.secretKey).encoded
    }

    /// The control key between member `index` and the server.
    public static let controlKeys: [[UInt8]] = (0..<count).map { index in
        Keys.controlKey(privateKey: privateKeys[index], publicKey: server.bytes, member: keys[index], server: server, party: id)!
    }

    /// `bytes` signed by the authority (what a certificate is: its fields, then the signature).
    public static func signed(_ bytes: [UInt8]) -> [UInt8] { bytes + Crypto.sign(bytes, secretKey: authority.secretKey) }
}

/// A control message `type ‖ body` with the given header, sealed under `key` (any body, any type:
/// what the decoder behind the HMAC gets to see).
public func sealControl(type: UInt8, body: [UInt8], party: UInt64, timestamp: UInt64, nonce: UInt64, sender: MemberKey,
                        key: [UInt8]) -> [UInt8] {
    var writer = ByteWriter(capacity: ControlMessage.headerCount + body.count + Crypto.tagCount)
    writer.raw([ControlMessage.magic.0, ControlMessage.magic.1, ControlMessage.version, type])
    writer.u64(party); writer.u64(timestamp); writer.u64(nonce); writer.raw(sender.bytes)
    writer.u16(UInt16(truncatingIfNeeded: body.count)); writer.raw(body)
    return writer.bytes + hmac(writer.bytes, key: key)
}

/// HMAC-SHA256 of `bytes` under `key` (32 bytes).
public func hmac(_ bytes: [UInt8], key: [UInt8]) -> [UInt8] {
    var tag = [UInt8](repeating: 0, count: Crypto.tagCount)
    bytes.withUnsafeBytes { data in tag.withUnsafeMutableBytes { Crypto.authenticate(data, key: key, into: $0) } }
    return tag
}

/// FUZZ_TRACE=1 in the environment: targets say what each input does (replaying one, writing seeds).
public let tracing = getenv("FUZZ_TRACE") != nil

public func trace(_ line: @autoclosure () -> String) {
    if tracing { print(line()) }
}

public func readFile(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    return bytes
}

public func writeFile(_ path: String, _ bytes: [UInt8]) {
    guard let file = fopen(path, "wb") else { fatalError("cannot write \(path)") }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
}

/// `TARGET --seeds DIR` (fuzzing build or not) writes the target's seed inputs to DIR; true when asked.
public func writeSeedsIfAsked(_ seeds: () -> [(String, [UInt8])]) -> Bool {
    let arguments = CommandLine.arguments
    guard arguments.count == 3, arguments[1] == "--seeds" else { return false }
    for (name, bytes) in seeds() {
        writeFile(arguments[2] + "/" + name, bytes)
        print("\(arguments[2])/\(name): \(bytes.count) bytes")
    }
    return true
}

/// The replayer of a target built without -D FUZZING: `TARGET FILE…` runs each file as an input.
public func replayMain(seeds: () -> [(String, [UInt8])], _ run: ([UInt8]) -> Void) {
    if writeSeedsIfAsked(seeds) { return }
    let arguments = CommandLine.arguments.dropFirst().filter { !$0.hasPrefix("-") }
    for path in arguments {
        guard let bytes = readFile(path) else { print("\(path): cannot open"); continue }
        run(bytes)
        print("\(path): \(bytes.count) bytes, no crash")
    }
}
