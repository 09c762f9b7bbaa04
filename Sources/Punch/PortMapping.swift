import Net
import Time

/// Obtains and keeps one UDP port mapping from the gateway — the WireGuard port on the router's
/// public address, so that any peer can reach it as through an endpoint-independent NAT. PCP is
/// asked first; NAT-PMP when the gateway speaks only that (it answers PCP with "unsupported
/// version") or PCP goes unanswered; each request is sent up to four times, 250 ms apart doubling
/// (RFC 6886's schedule, cut short, and sooner than RFC 6887's 3 s: a gateway on the LAN answers at
/// once). The mapping is renewed at half its lifetime (NAT-PMP asks the external address again: it
/// may have changed); a renewal that fails keeps the mapping until it expires and tries again every
/// 30 s; with no mapping, after every protocol failed, all are tried again five minutes later; `stop`
/// gives the mapping back. Pure: it is given the time and the gateway's datagrams, and returns what
/// to send (to the gateway's port 5351).
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
        public var send: [UInt8]?
        /// The mapping appeared, went, or moved to another external endpoint.
        public var changed = false

        public init(send: [UInt8]? = nil, changed: Bool = false) {
            self.send = send
            self.changed = changed
        }
    }

    /// The lifetime asked for, in seconds (RFC 6886 recommends two hours).
    public static let lifetime: UInt32 = 7200
    static let firstWait: Nanoseconds = 250_000_000
    static let tries = 4
    static let retry: Nanoseconds = 300_000_000_000
    static let renewalRetry: Nanoseconds = 30_000_000_000

    public let client: IPAddress
    public let internalPort: UInt16
    private let protocols: [PortMappingProtocol]
    private let nonce: [UInt8]
    public private(set) var mapped: Mapped?
    /// When ``timer(now:)`` is due next, if ever.
    public private(set) var deadline: Nanoseconds?
    /// The result code of the last refusal, for status (nil after a grant).
    public private(set) var lastRefusal: (PortMappingProtocol, UInt8)?
    private var current = 0
    private var request: PortMappingRequest?
    private var attempts = 0
    private var natPMPAddress: IPv4Address?

    /// A mapping of UDP `internalPort` for the host at `client` (its address toward the gateway),
    /// asked by `protocols` in turn; `nonce` (12 random bytes) names the PCP mapping.
    public init(client: IPAddress, internalPort: UInt16, protocols: [PortMappingProtocol], nonce: [UInt8]) {
        self.client = client
        self.internalPort = internalPort
        self.protocols = protocols
        self.nonce = nonce
    }

    /// Starts asking, with the first protocol.
    public mutating func start(now: Nanoseconds) -> Output {
        current = 0
        return ask(now: now)
    }

    /// The datagram `bytes` from the gateway's port 5351.
    public mutating func received(_ bytes: [UInt8], now: Nanoseconds) -> Output {
        guard let request, let answer = PortMappingAnswer(decoding: bytes, for: request) else { return Output() }
        switch answer {
        case .pcpMapped(let external, let lifetime) where lifetime > 0:
            return grant(.pcp, external, lifetime, now: now)
        case .natPMPAddress(let address):
            natPMPAddress = address
            return send(.natPMPMap(internalPort: internalPort, lifetime: Self.lifetime), now: now)
        case .natPMPMapped(let port, let lifetime) where lifetime > 0 && port != 0:
            guard let address = natPMPAddress else { return Output() }
            return grant(.natPMP, Endpoint(.v4(address), port), lifetime, now: now)
        case .refused(let code):
            lastRefusal = (protocols[current], code)
            return next(now: now)
        default:
            return next(now: now)
        }
    }

    /// The deadline passed: resend, try the next protocol, renew, or start again.
    public mutating func timer(now: Nanoseconds) -> Output {
        guard let deadline, now >= deadline else { return Output() }
        if let request {
            guard attempts >= Self.tries else {
                attempts += 1
                self.deadline = now + Self.firstWait << (attempts - 1)
                return Output(send: request.encoded)
            }
            return next(now: now)
        }
        if let mapped, let index = protocols.firstIndex(of: mapped.protocolUsed) {
            current = index
            return ask(now: now)
        }
        return start(now: now)
    }

    /// Gives the mapping back: the request to send (none when nothing is mapped). Nothing more is asked.
    public mutating func stop() -> [UInt8]? {
        defer { (mapped, request, deadline) = (nil, nil, nil) }
        switch mapped?.protocolUsed {
        case .pcp: return PortMappingRequest.pcpMap(client: client, internalPort: internalPort, lifetime: 0, nonce: nonce).encoded
        case .natPMP: return PortMappingRequest.natPMPMap(internalPort: internalPort, lifetime: 0).encoded
        case nil: return nil
        }
    }

    private mutating func ask(now: Nanoseconds) -> Output {
        guard current < protocols.count else { return fail(now: now) }
        switch protocols[current] {
        case .pcp: return send(.pcpMap(client: client, internalPort: internalPort, lifetime: Self.lifetime, nonce: nonce), now: now)
        case .natPMP: return send(.natPMPAddress, now: now)
        }
    }

    private mutating func send(_ next: PortMappingRequest, now: Nanoseconds) -> Output {
        request = next
        attempts = 1
        deadline = now + Self.firstWait
        return Output(send: next.encoded)
    }

    /// The current protocol failed: the next one, or none left.
    private mutating func next(now: Nanoseconds) -> Output {
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
