import Net
import Time

/// Obtains and keeps one UDP port mapping from the gateway — the WireGuard port on the router's
/// public address, so that any peer can reach it as through an endpoint-independent NAT. The
/// protocols are asked in the order given (PCP, NAT-PMP, UPnP-IGD by default); the next one when
/// the gateway refuses, does not speak the protocol (NAT-PMP's "unsupported version" to PCP, an
/// ICMP error, a refused connection) or stays silent. Each datagram is sent up to four times, 250
/// ms apart doubling (RFC 6886's schedule, cut short, and sooner than RFC 6887's 3 s: a gateway on
/// the LAN answers at once); each HTTP request of UPnP-IGD once, with 3 s for its answer.
///
/// UPnP-IGD searches the gateway with SSDP (unicast to its port 1900), reads the device description
/// the answer locates — on the gateway itself, no other host — and posts GetExternalIPAddress and
/// AddPortMapping to its WAN connection service. The external port is the internal one; when
/// another host holds it (error 718) a second port derived from the nonce; a gateway that keeps
/// only permanent mappings (error 725) is asked for one, and it is renewed all the same.
///
/// The mapping is renewed at half its lifetime (NAT-PMP and UPnP-IGD ask the external address again:
/// it may have changed); a renewal that fails keeps the mapping until it expires and tries again
/// every 30 s; with no mapping, after every protocol failed, all are tried again five minutes later;
/// `stop` gives the mapping back. Pure: it is given the time and the gateway's answers, and returns
/// what to send.
public struct PortMapping: Sendable {
    /// A mapping the gateway granted.
    public struct Mapped: Sendable, Equatable {
        public var protocolUsed: PortMappingProtocol
        public var external: Endpoint
        public var lifetime: UInt32
        /// When the lifetime runs out.
        public var expires: Nanoseconds
    }

    /// What an event asks of the caller.
    public struct Output: Sendable, Equatable {
        /// A request to send to the gateway.
        public var send: PortMappingRequest?
        /// The mapping appeared, went, or moved to another external endpoint.
        public var changed = false

        public init(send: PortMappingRequest? = nil, changed: Bool = false) {
            self.send = send
            self.changed = changed
        }
    }

    /// The lifetime asked for, in seconds (RFC 6886 recommends two hours).
    public static let lifetime: UInt32 = 7200
    static let firstWait: Nanoseconds = 250_000_000
    static let httpPatience: Nanoseconds = 3_000_000_000
    static let tries = 4
    static let retry: Nanoseconds = 300_000_000_000
    static let renewalRetry: Nanoseconds = 30_000_000_000

    public let client: IPAddress
    public let gateway: IPAddress
    public let internalPort: UInt16
    private let protocols: [PortMappingProtocol]
    private let nonce: [UInt8]
    public private(set) var mapped: Mapped?
    /// When ``timer(now:)`` is due next, if ever.
    public private(set) var deadline: Nanoseconds?
    /// The result code of the last refusal, for status (nil after a grant).
    public private(set) var lastRefusal: (PortMappingProtocol, UInt16)?
    /// The request awaiting its answer, if any.
    public private(set) var request: PortMappingRequest?
    private var current = 0
    private var attempts = 0
    private var natPMPAddress: IPv4Address?
    /// The description's WAN connection services not yet given up, the one in use first.
    private var upnpServices: [UPnPService] = []
    /// The service that granted the mapping, kept until it is given back: a failed renewal forgets
    /// the services, not what must be deleted at exit.
    private var upnpHeld: UPnPService?
    private var upnpAddress: IPv4Address?
    private var upnpPort: UInt16
    private var upnpLifetime = Self.lifetime

    /// A mapping of UDP `internalPort` for the host at `client` (its address toward `gateway`),
    /// asked by `protocols` in turn; `nonce` (12 random bytes) names the PCP mapping and picks
    /// UPnP-IGD's second external port.
    public init(client: IPAddress, gateway: IPAddress, internalPort: UInt16, protocols: [PortMappingProtocol], nonce: [UInt8]) {
        self.client = client
        self.gateway = gateway
        self.internalPort = internalPort
        self.protocols = protocols
        self.nonce = nonce
        upnpPort = internalPort
    }

    /// Starts asking, with the first protocol.
    public mutating func start(now: Nanoseconds) -> Output {
        current = 0
        return ask(now: now)
    }

    /// A datagram from the gateway (PCP, NAT-PMP, SSDP). One that answers nothing asked — a
    /// late answer, a duplicate, another request's — is ignored.
    public mutating func received(_ bytes: [UInt8], now: Nanoseconds) -> Output {
        guard let request, case .datagram = request.transport, let answer = PortMappingAnswer(decoding: bytes, for: request) else { return Output() }
        return handle(answer, to: request, now: now)
    }

    /// All that the HTTP connection of the request in flight returned until it closed. An answer
    /// that is not one (cut short, not HTTP, not what was asked) fails the request.
    public mutating func answered(_ bytes: [UInt8], now: Nanoseconds) -> Output {
        guard let request, case .http = request.transport else { return Output() }
        guard let answer = PortMappingAnswer(decoding: bytes, for: request) else { return next(now: now) }
        return handle(answer, to: request, now: now)
    }

    private mutating func handle(_ answer: PortMappingAnswer, to request: PortMappingRequest, now: Nanoseconds) -> Output {
        switch answer {
        case .pcpMapped(let external, let lifetime) where lifetime > 0:
            return grant(.pcp, external, lifetime, now: now)
        case .natPMPAddress(let address):
            natPMPAddress = address
            return send(.natPMPMap(internalPort: internalPort, lifetime: Self.lifetime), now: now)
        case .natPMPMapped(let port, let lifetime) where lifetime > 0 && port != 0:
            guard let address = natPMPAddress else { return Output() }
            return grant(.natPMP, Endpoint(.v4(address), port), lifetime, now: now)
        case .upnpLocation(let location):
            // A description elsewhere than on the gateway is not the gateway's.
            guard location.endpoint.address == gateway else { return Output() }
            return send(.upnpDescribe(location), now: now)
        case .upnpServices(let services):
            // Control URLs that name another host than the gateway are not the gateway's.
            upnpServices = services.filter { $0.control.endpoint.address == gateway }
            guard let service = upnpServices.first else { return next(now: now) }
            return send(.upnpExternalAddress(service), now: now)
        case .upnpExternalAddress(let address):
            guard let service = upnpServices.first else { return next(now: now) }
            upnpAddress = address
            return send(.upnpMap(service, externalPort: upnpPort, client: client, internalPort: internalPort, lifetime: upnpLifetime), now: now)
        case .upnpDone:
            guard case .upnpMap(let service, _, _, _, _) = request, let upnpAddress else { return next(now: now) }
            upnpHeld = service
            return grant(.upnp, Endpoint(.v4(upnpAddress), upnpPort), upnpLifetime == 0 ? Self.lifetime : upnpLifetime, now: now)
        case .refused(let code):
            if case .upnpMap(let service, _, _, _, _) = request {
                if code == 718, upnpPort == internalPort {
                    upnpPort = 1024 + (UInt16(nonce[0]) << 8 | UInt16(nonce[1])) % 64512
                } else if code == 725, upnpLifetime != 0 {
                    upnpLifetime = 0
                } else {
                    lastRefusal = (.upnp, code)
                    return next(now: now)
                }
                return send(.upnpMap(service, externalPort: upnpPort, client: client, internalPort: internalPort, lifetime: upnpLifetime), now: now)
            }
            lastRefusal = (protocols[current], code)
            return next(now: now)
        default:
            return next(now: now)
        }
    }

    /// The request in flight could not be delivered: the gateway answered a datagram with an ICMP
    /// error, or refused or broke the HTTP connection. The protocol is given up for now.
    public mutating func failed(now: Nanoseconds) -> Output {
        guard request != nil else { return Output() }
        return next(now: now)
    }

    /// The deadline passed: resend, try the next protocol, renew, or start again.
    public mutating func timer(now: Nanoseconds) -> Output {
        guard let deadline, now >= deadline else { return Output() }
        if let request {
            if case .datagram = request.transport, attempts < Self.tries {
                attempts += 1
                self.deadline = now + Self.firstWait << (attempts - 1)
                return Output(send: request)
            }
            return next(now: now)
        }
        if let mapped, let index = protocols.firstIndex(of: mapped.protocolUsed) {
            current = index
            return ask(now: now)
        }
        return start(now: now)
    }

    /// Gives the mapping back: the requests to send — for what is mapped, for a mapping request in
    /// flight (its grant may still come), and for a UPnP-IGD mapping granted earlier (it may be
    /// permanent); none when nothing was mapped. Nothing more is asked.
    public mutating func stop() -> [PortMappingRequest] {
        defer { (mapped, request, deadline, upnpHeld) = (nil, nil, nil, nil) }
        var deletes: [PortMappingRequest] = []
        var pcp = mapped?.protocolUsed == .pcp, natPMP = mapped?.protocolUsed == .natPMP
        switch request {
        case .pcpMap?: pcp = true
        case .natPMPMap?: natPMP = true
        case .upnpMap(let service, let port, _, _, _)? where service != upnpHeld || port != upnpPort:
            deletes.append(.upnpUnmap(service, externalPort: port))
        default: break
        }
        if pcp { deletes.append(.pcpMap(client: client, internalPort: internalPort, lifetime: 0, nonce: nonce)) }
        if natPMP { deletes.append(.natPMPMap(internalPort: internalPort, lifetime: 0)) }
        if let upnpHeld { deletes.append(.upnpUnmap(upnpHeld, externalPort: upnpPort)) }
        return deletes
    }

    private mutating func ask(now: Nanoseconds) -> Output {
        guard current < protocols.count else { return fail(now: now) }
        switch protocols[current] {
        case .pcp: return send(.pcpMap(client: client, internalPort: internalPort, lifetime: Self.lifetime, nonce: nonce), now: now)
        case .natPMP: return send(.natPMPAddress, now: now)
        case .upnp: return send(upnpServices.first.map { .upnpExternalAddress($0) } ?? .upnpSearch, now: now)
        }
    }

    private mutating func send(_ next: PortMappingRequest, now: Nanoseconds) -> Output {
        request = next
        attempts = 1
        if case .http = next.transport { deadline = now + Self.httpPatience } else { deadline = now + Self.firstWait }
        return Output(send: next)
    }

    /// The current protocol failed: the next one, or none left. A UPnP-IGD service whose external
    /// address cannot be read (a WAN connection that is down) gives way to the next one listed;
    /// otherwise a failed exchange forgets the services (the gateway may have restarted elsewhere)
    /// and the next try searches again.
    private mutating func next(now: Nanoseconds) -> Output {
        if protocols[current] == .upnp {
            if case .upnpExternalAddress? = request, upnpServices.count > 1 {
                upnpServices.removeFirst()
                return send(.upnpExternalAddress(upnpServices[0]), now: now)
            }
            upnpServices = []
        }
        current += 1
        return ask(now: now)
    }

    private mutating func fail(now: Nanoseconds) -> Output {
        request = nil
        if let mapped, now < mapped.expires {
            deadline = min(now + Self.renewalRetry, mapped.expires)
            return Output()
        }
        let had = mapped != nil
        mapped = nil
        deadline = now + Self.retry
        return Output(changed: had)
    }

    private mutating func grant(_ used: PortMappingProtocol, _ external: Endpoint, _ lifetime: UInt32, now: Nanoseconds) -> Output {
        let changed = mapped?.external != external || mapped?.protocolUsed != used
        let expires = now + Nanoseconds(lifetime) * 1_000_000_000
        (mapped, request, lastRefusal) = (Mapped(protocolUsed: used, external: external, lifetime: lifetime, expires: expires), nil, nil)
        deadline = now + Nanoseconds(lifetime) * 500_000_000
        return Output(changed: changed)
    }
}
