// libFuzzer target for what the resolver reads: `make fuzz-dns`. Each input is a name server's answer
// to two fixed questions (A and AAAA for control.example.net, ID 0x1234), and the text of a
// resolv.conf and of a hosts file.
// Checked: nothing traps or hangs; an answer gives at least one address, each of the family asked;
// the configuration keeps its bounds (3 name servers, timeout 1–30 s, attempts 1–5).
// Without -D FUZZING it is a replayer (`DNSFuzz FILE…`) and writes the seeds (`--seeds DIR`).
#if canImport(Glibc)
import Glibc
#endif
import DNS
import FuzzSupport
import Net

func fail(_ what: String) -> Never { fatalError("DNSFuzz: \(what)") }

let questions = [DNSQuery(id: 0x1234, name: "control.example.net", type: .a), DNSQuery(id: 0x1234, name: "control.example.net", type: .aaaa)]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    for query in questions {
        guard let found = try? query.addresses(in: bytes) else { continue }
        if found.addresses.isEmpty { fail("an answer without an address") }
        for address in found.addresses {
            switch (address, query.type) {
            case (.v4, .a), (.v6, .aaaa): break
            default: fail("an address of the wrong family: \(address)")
            }
        }
    }
    var configuration = ResolverConfiguration()
    configuration.parse(resolvConf: bytes)
    configuration.parse(hosts: bytes)
    if configuration.nameServers.count > 3 || !(1...5).contains(configuration.attempts)
        || !(Duration.seconds(1)...Duration.seconds(30)).contains(configuration.timeout) || configuration.hosts.count > 1024 {
        fail("the configuration left its bounds")
    }
    _ = configuration.hostsAddresses(for: "control.example.net", type: .a)
    return 0
}

/// Seeds: answers as name servers send them (compressed, a CNAME chain, NXDOMAIN), and the files.
func seeds() -> [(String, [UInt8])] {
    let question = questions[0].encoded()
    func answer(_ records: [UInt8], count: UInt8, rcode: UInt8 = 0) -> [UInt8] {
        var bytes = question
        bytes[2] = 0x81; bytes[3] = 0x80 | rcode; bytes[7] = count
        return bytes + records
    }
    let a: [UInt8] = [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]
    let cname: [UInt8] = [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, 0x64, 0x79, 0x6E, 0xC0, 20]
        + [0xC0, 37 + 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 51, 100, 9]
    return [
        ("answer-a", answer(a, count: 1)),
        ("answer-cname", answer(cname, count: 2)),
        ("answer-nxdomain", answer([], count: 0, rcode: 3)),
        ("resolv-conf", Array("nameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:2 attempts:3\n".utf8)),
        ("hosts", Array("127.0.0.1 localhost\n192.0.2.9 control.example.net control\n".utf8)),
    ]
}

#if FUZZING
// SwiftPM links an executable's entry point as `<Target>_main` and aliases `main` to it; hand over
// to libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("DNSFuzz_main")
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
