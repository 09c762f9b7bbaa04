import CLinux
import Net
import Output
import Punch
import Rendezvous
import Time

/// What the IPv4 default gateway offers for port mapping, for `lanrage netcheck`: a mapping of the
/// probe's own socket's port (not the WireGuard port, whose mapping a running agent may hold) is
/// asked by PCP and NAT-PMP at once, awaited for at most two seconds — a gateway that maps answers
/// at once, one where nothing listens on port 5351 says so with an ICMP error — and given back.
struct GatewayProbe {
    let gateway: IPAddress
    let mapped: PortMapping.Mapped?
    /// The gateway refused the requests (ICMP port unreachable: no server on port 5351).
    var refused = false

    static let patience: Nanoseconds = 2_000_000_000

    /// The probe, or nil without a default gateway.
    static func run() -> GatewayProbe? {
        guard let (socket, gateway, found) = PortMappingProtocol.gatewaySocket() else { return nil }
        guard let client = found else { return GatewayProbe(gateway: gateway.address, mapped: nil) }
        let nonce = Crypto.random(12), clock = SystemClock(), end = clock.now + patience
        var machines = [PortMappingProtocol.pcp, .natPMP].map {
            PortMapping(client: client, internalPort: socket.local.port, protocols: [$0], nonce: nonce)
        }
        var outputs = machines.indices.map { machines[$0].start(now: clock.now) }
        var buffer = [UInt8](repeating: 0, count: 128)
        var refused = false
        while machines.allSatisfy({ $0.mapped == nil }), clock.now < end, let deadline = machines.compactMap({ $0.deadline }).min() {
            // A pending ICMP error is also reported (and cleared) by the next send.
            for output in outputs {
                guard let bytes = output.send else { continue }
                do { try socket.send(bytes, to: gateway) } catch { refused = refused || error.errno == ECONNREFUSED }
            }
            if refused { break }
            outputs = machines.map { _ in PortMapping.Output() }
            let wait = Duration.nanoseconds(max(0, min(deadline, end) - clock.now))
            guard (try? Readiness.readable([socket.descriptor], timeout: wait))?.isEmpty == false else {
                for index in machines.indices { outputs[index] = machines[index].timer(now: clock.now) }
                continue
            }
            // An ICMP port unreachable is the socket's pending error (reading it clears it).
            var pending: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(socket.descriptor, SOL_SOCKET, SO_ERROR, &pending, &size) == 0, pending == ECONNREFUSED {
                refused = true
                break
            }
            if let (count, from) = (try? socket.receive(into: &buffer)) ?? nil, from == gateway {
                for index in machines.indices { outputs[index] = machines[index].received(Array(buffer[..<count]), now: clock.now) }
            }
        }
        let mapped = machines.compactMap({ $0.mapped }).first
        // Both given back, mapped or not: the other protocol's request may still be granted.
        let port = socket.local.port
        for request in [PortMappingRequest.pcpMap(client: client, internalPort: port, lifetime: 0, nonce: nonce), .natPMPMap(internalPort: port, lifetime: 0)] {
            _ = try? socket.send(request.encoded, to: gateway)
        }
        return GatewayProbe(gateway: gateway.address, mapped: mapped, refused: refused)
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
