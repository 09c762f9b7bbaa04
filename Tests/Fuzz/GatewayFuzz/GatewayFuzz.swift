// libFuzzer target for what a home gateway answers to port mapping: `make fuzz-gateway`.
// Each input is decoded as the answer to every kind of request (PCP, NAT-PMP, SSDP, the UPnP-IGD
// description and SOAP answers), and split on 0xFF 0xFE into a program run against a fresh
// PortMapping machine asking PCP, NAT-PMP and UPnP-IGD of gateway 203.0.113.5: per piece, its first
// byte picks a datagram, an HTTP answer, a failed delivery or time passing to the next deadline.
// Checked: nothing traps or hangs; every request goes to the gateway (datagrams to its ports 5351
// and 1900, HTTP to its address only), its URL paths printable ASCII without spaces and service
// types WANIPConnection:N or WANPPPConnection:N; a request in flight always has a deadline; a
// mapping has an external port and a lifetime; `stop` owes at most three deletes.
// Without -D FUZZING it is a replayer (`GatewayFuzz FILE…`) and writes the seeds (`--seeds DIR`).
#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
import Net
import Time
@testable import Punch

func fail(_ what: String) -> Never { fatalError("GatewayFuzz: \(what)") }

let gateway = IPAddress.v4(IPv4Address(203, 0, 113, 5))
let client = IPAddress.v4(IPv4Address(203, 0, 113, 6))
let location = UPnPURL(endpoint: Endpoint(gateway, 5000), path: Array("/rootDesc.xml".utf8))
let service = UPnPService(control: UPnPURL(endpoint: Endpoint(gateway, 5000), path: Array("/ctl".utf8)),
                          type: Array("urn:schemas-upnp-org:service:WANIPConnection:1".utf8))
let requests: [PortMappingRequest] = [
    .pcpMap(client: client, internalPort: 51820, lifetime: 7200, nonce: [UInt8](1...12)), .natPMPAddress,
    .natPMPMap(internalPort: 51820, lifetime: 7200), .upnpSearch, .upnpDescribe(location), .upnpExternalAddress(service),
    .upnpMap(service, externalPort: 51820, client: client, internalPort: 51820, lifetime: 7200), .upnpUnmap(service, externalPort: 51820),
]

func check(_ url: UPnPURL) {
    if url.path.isEmpty || !url.path.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) { fail("a URL path that could break a request: \(url.path)") }
}

func check(_ service: UPnPService) {
    check(service.control)
    if !UPnP.isWANConnection(service.type[...]) { fail("a service type that is not a WAN connection's") }
}

func check(_ request: PortMappingRequest) {
    switch request.transport {
    case .datagram(let port):
        if port != PortMappingProtocol.serverPort && port != PortMappingProtocol.ssdpPort { fail("a datagram to port \(port)") }
    case .http(let endpoint):
        if endpoint.address != gateway { fail("an HTTP request to \(endpoint)") }
    }
    switch request {
    case .upnpDescribe(let url): check(url)
    case .upnpExternalAddress(let service), .upnpMap(let service, _, _, _, _), .upnpUnmap(let service, _): check(service)
    default: break
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    for request in requests {
        switch PortMappingAnswer(decoding: bytes, for: request) {
        case .upnpLocation(let url)?: check(url)
        case .upnpServices(let services)?:
            if services.isEmpty || services.count > UPnP.maxServices { fail("\(services.count) services") }
            services.forEach(check)
        case .pcpMapped(let external, _)?: if external.port == 0 { fail("a PCP mapping of port 0") }
        default: break
        }
    }
    var machine = PortMapping(client: client, gateway: gateway, internalPort: 51820, protocols: [.pcp, .natPMP, .upnp], nonce: [UInt8](1...12))
    var now: Nanoseconds = 0
    var output = machine.start(now: now)
    var pieces: [ArraySlice<UInt8>] = []
    var start = 0
    for index in bytes.indices.dropLast() where bytes[index] == 0xFF && bytes[index + 1] == 0xFE {
        pieces.append(bytes[start..<index])
        start = index + 2
    }
    pieces.append(bytes[start...])
    for piece in pieces.prefix(64) {
        if let request = output.send { check(request) }
        if machine.request != nil && machine.deadline == nil { fail("a request without a deadline") }
        if let mapped = machine.mapped, mapped.external.port == 0 || mapped.lifetime == 0 { fail("a mapping of port 0 or for no time") }
        let answer = Array(piece.dropFirst())
        switch piece.first.map({ $0 % 4 }) {
        case 0?: output = machine.received(answer, now: now)
        case 1?: output = machine.answered(answer, now: now)
        case 2?: output = machine.failed(now: now)
        default:
            guard let deadline = machine.deadline else { continue }
            now = max(now, deadline)
            output = machine.timer(now: now)
        }
    }
    if let request = output.send { check(request) }
    let deletes = machine.stop()
    if deletes.count > 3 { fail("\(deletes.count) deletes") }
    deletes.forEach(check)
    return 0
}

/// Seeds: a whole UPnP-IGD exchange as miniupnpd answers it, PCP and NAT-PMP grants, and faults.
func seeds() -> [(String, [UInt8])] {
    func http(_ body: String, status: String = "200 OK") -> [UInt8] {
        Array("HTTP/1.1 \(status)\r\nContent-Type: text/xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }
    let ssdp = Array("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://203.0.113.5:5000/rootDesc.xml\r\n\r\n".utf8)
    let description = http("<root><URLBase>http://203.0.113.5:5000</URLBase><device><serviceList><service><serviceType>"
        + "urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ctl/IPConn</controlURL></service></serviceList></device></root>")
    let address = http("<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>198.51.100.6</NewExternalIPAddress>"
        + "</u:GetExternalIPAddressResponse></s:Body></s:Envelope>")
    let added = http("<s:Envelope><s:Body><u:AddPortMappingResponse/></s:Body></s:Envelope>")
    let conflict = http("<s:Fault><detail><UPnPError><errorCode>718</errorCode></UPnPError></detail></s:Fault>", status: "500 Internal Server Error")
    let chunked = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<a>x\r\n0\r\n\r\n".utf8)
    let separator: [UInt8] = [0xFF, 0xFE]
    // PCP refused by NAT-PMP's unsupported version, NAT-PMP silent (time passes), then UPnP-IGD.
    let upnp: [UInt8] = [0, 0, 0x81, 0, 1, 0, 0, 0, 5] + separator + [3] + separator + [3] + separator + [3] + separator + [3]
        + separator + [0] + ssdp + separator + [1] + description + separator + [1] + address + separator + [1] + conflict
        + separator + [1] + added + separator + [3] + separator + [2]
    let pcp: [UInt8] = [0, 2, 0x81, 0, 0, 0, 0, 0x1C, 0x20, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 12) + [UInt8](1...12)
        + [17, 0, 0, 0, 0xCA, 0x6C, 0x9C, 0x40] + [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 198, 51, 100, 6]
    return [("upnp-exchange", upnp), ("pcp-grant", pcp), ("ssdp", ssdp), ("description", description), ("chunked", chunked)]
}

#if FUZZING
// SwiftPM links an executable's entry point as `<Target>_main` and aliases `main` to it; hand over
// to libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("GatewayFuzz_main")
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
