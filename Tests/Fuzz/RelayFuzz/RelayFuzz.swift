// libFuzzer target for the relay's decoders: service messages (allocate, allocated, load query,
// load) and tokens, both raw and sealed with the relay key so the decoders behind the HMAC run too.
// Without -D FUZZING it is a replayer: `RelayFuzz FILE…`.
#if canImport(Glibc)
import Glibc
#endif
import Net
import Rendezvous

enum Fuzz {
    static let relayKey = Keys.relayKey(secret: Array("fuzzing relay".utf8))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let buffer = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    _ = try? RelayMessage(decoding: buffer, key: Fuzz.relayKey)
    _ = try? RelayMessage(decoding: buffer, key: nil)
    _ = try? RelayToken(verifying: buffer, key: Fuzz.relayKey, nowSeconds: 0)
    if let token = try? RelayToken(decoding: buffer) {
        // A decodable token, sealed, verifies to itself.
        let sealed = token.encoded(key: Fuzz.relayKey)
        guard let again = try? sealed.withUnsafeBytes({ try RelayToken(verifying: $0, key: Fuzz.relayKey, nowSeconds: 0) }), again == token else {
            fatalError("token did not survive sealing: \(token)")
        }
    }
    // Sealed service messages: the bytes with a valid tag appended.
    if size >= 4 && size <= 96 {
        var sealed = Array(buffer) + [UInt8](repeating: 0, count: 32)
        sealed.withUnsafeMutableBytes { raw in
            Crypto.authenticate(UnsafeRawBufferPointer(rebasing: raw[..<size]), key: Fuzz.relayKey,
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[size...]))
        }
        if let message = try? sealed.withUnsafeBytes({ try RelayMessage(decoding: $0, key: Fuzz.relayKey) }) {
            let again = try? message.encoded(key: Fuzz.relayKey).withUnsafeBytes { try RelayMessage(decoding: $0, key: Fuzz.relayKey) }
            if again != message { fatalError("re-encoding changed the message: \(message)") }
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

@_cdecl("RelayFuzz_main")
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
            print("\(path): \(bytes.count) bytes, no crash")
        }
    }
}
#endif
