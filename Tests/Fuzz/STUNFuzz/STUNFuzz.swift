// libFuzzer target for the STUN decoder: `make fuzz`.
// Built with -sanitize=fuzzer,address -D FUZZING, libFuzzer supplies main. In a normal build this is
// a replayer: `STUNFuzz FILE…` decodes each file (a crash input or corpus entry) and prints the result.
#if canImport(Glibc)
import Glibc
#endif
import Net
import STUN

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let buffer = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    for classic in [false, true] {
        guard let message = try? Message(decoding: buffer, allowingClassic: classic) else { continue }
        // Whatever decodes must re-encode and decode again to the same attributes (MI/FP recomputed).
        let again = try? Message(decoding: message.encoded(), allowingClassic: classic)
        let kept = message.attributes.filter {
            switch $0 { case .messageIntegrity, .fingerprint: false; default: true }
        }
        if again?.attributes != kept { fatalError("re-encoding changed the message: \(message)") }
        _ = message.isAuthentic(Array(buffer), key: [1, 2, 3])
    }
    // The server sees the same untrusted bytes.
    let responder = BindingResponder(primary: Endpoint("192.0.2.1:3478")!, alternate: Endpoint("192.0.2.2:3479")!)
    if let reply = responder.respond(to: Array(buffer), from: Endpoint("198.51.100.7:4000")!, on: responder.primary) {
        if (try? Message(decoding: reply.bytes, allowingClassic: true)) == nil { fatalError("server sent undecodable reply") }
    }
    return 0
}

#if FUZZING
// SwiftPM links an executable's entry point as `<Target>_main` and aliases `main` to it; hand over
// to libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("STUNFuzz_main")
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
            do {
                let message = try Message(decoding: bytes)
                print("\(path): \(message.type), \(message.attributes.count) attributes")
            } catch {
                print("\(path): \(error)")
            }
            _ = bytes.withUnsafeBufferPointer { fuzz($0.baseAddress, $0.count) }
        }
    }
}
#endif
