import Agent
import EventLoop
import Net
import Output
import Punch
import Rendezvous
import Time

/// What the IPv4 default gateway offers for port mapping, for `lanrage netcheck`: a mapping of a
/// port of the probe's own (not the WireGuard port, whose mapping a running agent may hold) is
/// asked by PCP, NAT-PMP and UPnP-IGD at once, awaited for at most two seconds — a gateway that maps
/// answers at once, one where nothing listens says so with ICMP errors — and given back.
struct GatewayProbe {
    let gateway: IPAddress
    let mapped: PortMapping.Mapped?
    /// Every protocol was refused (ICMP port unreachable: no server on ports 5351 and 1900).
    var refused = false

    static let patience: Nanoseconds = 2_000_000_000
    static let slice: Nanoseconds = 20_000_000

    /// The probe, or nil without a default gateway.
    static func run() -> GatewayProbe? {
        let clock = SystemClock()
        guard let gateway = LocalAddresses.defaultGateway(), let loop = try? EventLoop(clock: clock) else { return nil }
        let nonce = Crypto.random(12)
        let mappers = [PortMappingProtocol.pcp, .natPMP, .upnp].compactMap {
            PortMapper(port: nil, protocols: [$0], nonce: nonce, loop: loop, clock: clock)
        }
        for mapper in mappers {
            mapper.onChange = { loop.stop() }
            mapper.start()
        }
        let end = clock.now + patience
        while clock.now < end, mappers.allSatisfy({ $0.machine.mapped == nil }), mappers.contains(where: { $0.machine.request != nil }) {
            try? loop.run(until: min(end, clock.now + slice))
        }
        let mapped = mappers.lazy.compactMap({ $0.machine.mapped }).first
        // Every one given back, mapped or not: a request still in flight may yet be granted.
        for mapper in mappers { mapper.stop() }
        return GatewayProbe(gateway: .v4(gateway), mapped: mapped, refused: !mappers.isEmpty && mappers.allSatisfy { $0.refused })
    }

    var text: String {
        guard let mapped else {
            return "Port mapping:    none from gateway \(gateway) (" + (refused ? "nothing listens on ports 5351 and 1900)" : "no PCP, NAT-PMP or UPnP-IGD mapping within 2 s)")
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
