import CLinux
import Net
import Output
import Punch
import Rendezvous
import Time

/// What the IPv4 default gateway offers for port mapping, for `lanrage netcheck`: a mapping is
/// asked (PCP, then NAT-PMP), awaited for at most two seconds — a gateway that maps answers at
/// once, one where nothing listens on port 5351 says so with an ICMP error — and given back.
struct GatewayProbe {
    let gateway: IPv4Address
    let mapped: PortMapping.Mapped?
    /// The gateway refused the requests (ICMP port unreachable: no server on port 5351).
    var refused = false

    static let patience: Nanoseconds = 2_000_000_000

    /// The probe of a mapping for local UDP `port`, or nil without a default gateway.
    static func run(port: UInt16) -> GatewayProbe? {
        guard let address = LocalAddresses.defaultGateway(),
              let socket = try? UDPSocket(binding: Endpoint(.unspecified(AF_INET), 0)) else { return nil }
        let gateway = Endpoint(.v4(address), PortMappingProtocol.serverPort)
        // Connected to the gateway (as `source` leaves it), the socket also hears its ICMP errors.
        guard let client = LocalAddresses.source(toward: gateway, probe: socket.descriptor) else { return GatewayProbe(gateway: address, mapped: nil) }
        var machine = PortMapping(client: client, internalPort: port, protocols: [.pcp, .natPMP], nonce: Crypto.random(12))
        let clock = SystemClock(), end = clock.now + patience
        var output = machine.start(now: clock.now)
        var buffer = [UInt8](repeating: 0, count: 128)
        var refused = false
        while machine.mapped == nil, clock.now < end, let deadline = machine.deadline {
            if let bytes = output.send { _ = try? socket.send(bytes, to: gateway) }
            let wait = Duration.nanoseconds(max(0, min(deadline, end) - clock.now))
            guard (try? Readiness.readable([socket.descriptor], timeout: wait))?.isEmpty == false else {
                output = machine.timer(now: clock.now)
                continue
            }
            // An ICMP port unreachable is the socket's pending error (reading it clears it).
            var pending: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(socket.descriptor, SOL_SOCKET, SO_ERROR, &pending, &size) == 0, pending == ECONNREFUSED {
                refused = true
                break
            }
            output = PortMapping.Output()
            if let (count, from) = (try? socket.receive(into: &buffer)) ?? nil, from == gateway {
                output = machine.received(Array(buffer[..<count]), now: clock.now)
            }
        }
        let mapped = machine.mapped
        if let bytes = machine.stop() { _ = try? socket.send(bytes, to: gateway) }
        return GatewayProbe(gateway: address, mapped: mapped, refused: refused)
    }

    var text: String {
        guard let mapped else {
            return "Port mapping:    none from gateway \(gateway) (" + (refused ? "nothing listens on port 5351)" : "neither PCP nor NAT-PMP mapped within 2 s)")
        }
        return "Port mapping:    \(mapped.protocolUsed.rawValue) \(mapped.external) for \(mapped.lifetime) s from gateway \(gateway) (given back)"
    }

    var json: JSON {
        .object([
            ("gateway", .string("\(gateway)")),
            ("protocol", mapped.map { JSON.string($0.protocolUsed.rawValue) } ?? .null),
            ("external", mapped.map { JSON.string("\($0.external)") } ?? .null),
            ("lifetime_s", mapped.map { JSON.int(Int64($0.lifetime)) } ?? .null),
        ])
    }
}
