import CLinux
import Net

/// The port-mapping protocols a home router may answer: PCP (RFC 6887) and its predecessor
/// NAT-PMP (RFC 6886) on UDP port 5351, and UPnP-IGD (SSDP on UDP port 1900, then SOAP over
/// HTTP). Each maps one UDP port of the router's public address to a port of a host inside, for a
/// lifetime the host renews.
public enum PortMappingProtocol: String, Sendable, Equatable {
    case pcp = "PCP"
    case natPMP = "NAT-PMP"
    case upnp = "UPnP-IGD"

    /// The gateway's port for PCP and NAT-PMP.
    public static let serverPort: UInt16 = 5351
    /// The gateway's SSDP port, where UPnP-IGD's search goes.
    public static let ssdpPort: UInt16 = 1900

    /// A UDP socket for asking the IPv4 default gateway, connected to its port 5351 (so that it
    /// also hears the gateway's ICMP errors), the gateway's endpoint, and the address this host
    /// speaks from toward it (nil when no route leads there); nil without a default gateway.
    public static func gatewaySocket() -> (socket: UDPSocket, gateway: Endpoint, client: IPAddress?)? {
        guard let address = LocalAddresses.defaultGateway(),
              let socket = try? UDPSocket(binding: Endpoint(.unspecified(AF_INET), 0)) else { return nil }
        let gateway = Endpoint(.v4(address), serverPort)
        return (socket, gateway, LocalAddresses.source(toward: gateway, probe: socket.descriptor))
    }
}

/// How a ``PortMappingRequest`` reaches the gateway.
public enum PortMappingTransport: Sendable, Equatable {
    /// One UDP datagram to the gateway's `port`; the answer comes back from there.
    case datagram(port: UInt16)
    /// An HTTP request on a TCP connection of its own to `endpoint`; the answer is all the
    /// connection returns until it closes.
    case http(Endpoint)
}

/// One request to a gateway, as bytes: a PCP MAP, NAT-PMP's external-address or UDP-mapping
/// request, or a step of UPnP-IGD. A lifetime of 0 deletes a PCP or NAT-PMP mapping.
public enum PortMappingRequest: Sendable, Equatable {
    /// PCP MAP of UDP `internalPort` for `client` (its address as the gateway sees it), under `nonce` (12 bytes).
    case pcpMap(client: IPAddress, internalPort: UInt16, lifetime: UInt32, nonce: [UInt8])
    /// NAT-PMP: the gateway's external address.
    case natPMPAddress
    /// NAT-PMP: map UDP `internalPort`.
    case natPMPMap(internalPort: UInt16, lifetime: UInt32)
    /// UPnP-IGD: SSDP's search for the gateway device.
    case upnpSearch
    /// UPnP-IGD: the device description at the location the search answered.
    case upnpDescribe(UPnPURL)
    /// UPnP-IGD: the WAN connection's external address.
    case upnpExternalAddress(UPnPService)
    /// UPnP-IGD: AddPortMapping of UDP `externalPort` to `client`'s `internalPort` (a `lifetime`
    /// of 0 asks for a permanent mapping).
    case upnpMap(UPnPService, externalPort: UInt16, client: IPAddress, internalPort: UInt16, lifetime: UInt32)
    /// UPnP-IGD: DeletePortMapping of UDP `externalPort`.
    case upnpUnmap(UPnPService, externalPort: UInt16)

    /// Where the request goes.
    public var transport: PortMappingTransport {
        switch self {
        case .pcpMap, .natPMPAddress, .natPMPMap: .datagram(port: PortMappingProtocol.serverPort)
        case .upnpSearch: .datagram(port: PortMappingProtocol.ssdpPort)
        case .upnpDescribe(let url): .http(url.endpoint)
        case .upnpExternalAddress(let service), .upnpMap(let service, _, _, _, _), .upnpUnmap(let service, _): .http(service.control.endpoint)
        }
    }

    public var encoded: [UInt8] {
        switch self {
        case .pcpMap(let client, let port, let lifetime, let nonce):
            // Header: version 2, opcode MAP (1), reserved, lifetime, client address (IPv4-mapped);
            // then nonce, protocol UDP (17), reserved, internal port, suggested port and address (none).
            var bytes: [UInt8] = [2, 1, 0, 0] + Self.u32(lifetime) + Self.mapped(client) + nonce + [17, 0, 0, 0]
            bytes += Self.u16(port) + Self.u16(0) + Self.mapped(.v4(IPv4Address(0)))
            return bytes
        case .natPMPAddress:
            return [0, 0]
        case .natPMPMap(let port, let lifetime):
            return [0, 1, 0, 0] + Self.u16(port) + Self.u16(lifetime == 0 ? 0 : port) + Self.u32(lifetime)
        case .upnpSearch:
            return UPnP.search
        case .upnpDescribe(let url):
            return UPnP.get(url)
        case .upnpExternalAddress(let service):
            return UPnP.action("GetExternalIPAddress", of: service, [])
        case .upnpMap(let service, let external, let client, let port, let lifetime):
            return UPnP.action("AddPortMapping", of: service, [
                ("NewRemoteHost", ""), ("NewExternalPort", "\(external)"), ("NewProtocol", "UDP"), ("NewInternalPort", "\(port)"),
                ("NewInternalClient", "\(client)"), ("NewEnabled", "1"), ("NewPortMappingDescription", "lanrage"),
                ("NewLeaseDuration", "\(lifetime)"),
            ])
        case .upnpUnmap(let service, let external):
            return UPnP.action("DeletePortMapping", of: service, [("NewRemoteHost", ""), ("NewExternalPort", "\(external)"), ("NewProtocol", "UDP")])
        }
    }

    static func u16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    static func u32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }

    /// An address in PCP's 16-byte form: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
    static func mapped(_ address: IPAddress) -> [UInt8] {
        switch address {
        case .v4(let v4): [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + v4.bytes
        case .v6(let v6): v6.bytes
        }
    }
}

/// A gateway's answer to a ``PortMappingRequest``.
public enum PortMappingAnswer: Sendable, Equatable {
    /// PCP: the mapping, with the external endpoint and the lifetime granted.
    case pcpMapped(external: Endpoint, lifetime: UInt32)
    /// NAT-PMP: the gateway's external address.
    case natPMPAddress(IPv4Address)
    /// NAT-PMP: the mapping's external port and lifetime.
    case natPMPMapped(externalPort: UInt16, lifetime: UInt32)
    /// The gateway speaks only NAT-PMP (a PCP request answered with NAT-PMP's unsupported version).
    case unsupportedVersion
    /// UPnP-IGD: where the gateway's device description is.
    case upnpLocation(UPnPURL)
    /// UPnP-IGD: the description's WAN connection services, in the order listed.
    case upnpServices([UPnPService])
    /// UPnP-IGD: the external address.
    case upnpExternalAddress(IPv4Address)
    /// UPnP-IGD: the mapping was added (or deleted).
    case upnpDone
    /// Refused, with the protocol's result code (UPnP's error code; 0 when a UPnP answer failed
    /// without one).
    case refused(UInt16)

    /// The answer to `request` in `bytes`, or nil when the bytes are not one (malformed, another
    /// request's, another nonce or port).
    public init?(decoding bytes: [UInt8], for request: PortMappingRequest) {
        guard bytes.count >= 4 else { return nil }
        if case .http = request.transport {
            self.init(http: bytes, for: request)
            return
        }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) << 16 | UInt32(u16(at + 2)) }
        switch request {
        case .pcpMap(_, let port, _, let nonce):
            // NAT-PMP's "unsupported version" to a PCP request: version 0, opcode 128 + 1, result 1.
            if bytes[0] == 0 {
                guard bytes[1] >= 128, u16(2) == 1 else { return nil }
                self = .unsupportedVersion
                return
            }
            guard bytes.count >= 60, bytes[0] == 2, bytes[1] == 0x81, Array(bytes[24..<36]) == nonce else { return nil }
            guard bytes[3] == 0 else { self = .refused(UInt16(bytes[3])); return }
            guard bytes[36] == 17, u16(40) == port else { return nil }
            let address = Array(bytes[44..<60])
            let external: IPAddress? = address.prefix(12).elementsEqual(PortMappingRequest.mapped(.v4(IPv4Address(0))).prefix(12))
                ? .v4(IPv4Address(address[12], address[13], address[14], address[15])) : IPv6Address(bytes: address).map { .v6($0) }
            guard let external, u16(42) != 0, external != .unspecified(external.family) else { return nil }
            self = .pcpMapped(external: Endpoint(external, u16(42)), lifetime: u32(4))
        case .natPMPAddress:
            guard bytes[0] == 0, bytes[1] == 128 else { return nil }
            guard u16(2) == 0 else { self = .refused(u16(2)); return }
            guard bytes.count >= 12 else { return nil }
            self = .natPMPAddress(IPv4Address(bytes[8], bytes[9], bytes[10], bytes[11]))
        case .natPMPMap(let port, _):
            guard bytes[0] == 0, bytes[1] == 129 else { return nil }
            guard u16(2) == 0 else { self = .refused(u16(2)); return }
            guard bytes.count >= 16, u16(8) == port else { return nil }
            self = .natPMPMapped(externalPort: u16(10), lifetime: u32(12))
        case .upnpSearch:
            guard let location = UPnP.location(bytes) else { return nil }
            self = .upnpLocation(location)
        default:
            return nil
        }
    }

    /// The answer to a UPnP HTTP request: a description, or a SOAP answer or fault.
    private init?(http bytes: [UInt8], for request: PortMappingRequest) {
        guard let (status, body) = UPnP.response(bytes) else { return nil }
        guard status == 200 else {
            let code = UPnP.element("errorCode", in: body[...]).flatMap { UInt16(String(decoding: $0, as: UTF8.self)) }
            self = .refused(code ?? 0)
            return
        }
        switch request {
        case .upnpDescribe(let location):
            let services = UPnP.services(in: body, from: location)
            guard !services.isEmpty else { return nil }
            self = .upnpServices(services)
        case .upnpExternalAddress:
            guard let text = UPnP.element("NewExternalIPAddress", in: body[...]),
                  let address = IPv4Address(String(decoding: text, as: UTF8.self)), address != IPv4Address(0) else { return nil }
            self = .upnpExternalAddress(address)
        case .upnpMap:
            guard UPnP.find(Array("AddPortMappingResponse".utf8), in: body[...]) != nil else { return nil }
            self = .upnpDone
        default:
            self = .upnpDone
        }
    }
}
