import Net
import STUN
import Time

/// A home router's NAT, as the lab's nftables rulesets make it (Tests/LabSupport/Lab.swift):
/// endpoint-independent mapping that keeps the inside port when it is free ("masquerade
/// persistent"), or a new random port per destination for symmetric ("masquerade random,
/// fully-random"); filtering by nothing, by remote address or by remote endpoint; unsolicited
/// inbound datagrams dropped. Each flow (mapping, remote endpoint) is a conntrack entry of its own:
/// it lives 30 s unanswered and 120 s once answered (conntrack's UDP timeouts), a mapping as long
/// as one of its flows; the table holds `flowLimit` entries. Hairpinning only when enabled.
public final class SimulatedRouter {
    public let name: String
    /// Full cone, restricted cone, port-restricted cone or symmetric.
    public let behaviour: NATType
    /// The public (WAN) address.
    public internal(set) var wan: IPv4Address
    /// The segment the WAN side is on (0: the Internet; else the LAN of the router in front).
    let outside: Int
    /// The segment of the LAN behind the router.
    let inside: Int
    /// Whether a datagram from the LAN to the router's own public address is sent back in (hairpin NAT).
    public var hairpin = false
    /// How long a flow lives with no reply seen, and once answered (conntrack's
    /// nf_conntrack_udp_timeout and _stream).
    public var unrepliedTimeout: Nanoseconds = 30_000_000_000
    public var repliedTimeout: Nanoseconds = 120_000_000_000
    /// The most flows tracked, as conntrack's table limit: a datagram that would start one more is
    /// dropped. OpenWrt's default `nf_conntrack_max`.
    public var flowLimit = 16384
    /// Flows tracked now (expired ones count until a sweep or a lookup meets them).
    public private(set) var flowCount = 0
    /// Datagrams dropped because the table was full.
    public private(set) var tableFull = 0

    private struct Flow {
        var lastUsed: Nanoseconds
        var replied: Bool
    }

    private struct Mapping {
        var inside: Endpoint
        var publicPort: UInt16
        /// Per remote endpoint, its flow.
        var flows: [Endpoint: Flow]
    }

    private struct Key: Hashable {
        var inside: Endpoint
        /// The destination, for a mapping that depends on it; `nil` for endpoint-independent.
        var remote: Endpoint?
    }

    private var mappings: [Key: Mapping] = [:]
    private var byPort: [UInt16: Key] = [:]

    init(name: String, behaviour: NATType, wan: IPv4Address, outside: Int, inside: Int) {
        precondition([.fullCone, .restrictedCone, .portRestrictedCone, .symmetric].contains(behaviour), "a router is a NAT")
        self.name = name
        self.behaviour = behaviour
        self.wan = wan
        self.outside = outside
        self.inside = inside
    }

    /// Forgets every mapping (conntrack -F, or the router rebooted).
    public func flush() {
        mappings = [:]
        byPort = [:]
        flowCount = 0
    }

    /// The public source of a datagram from `source` inside to `destination` outside, creating or
    /// refreshing its flow (and the mapping); `nil` when the table is full.
    func outbound(from source: Endpoint, to destination: Endpoint, now: Nanoseconds, random: inout SimulationRandom) -> Endpoint? {
        let key = Key(inside: source, remote: behaviour == .symmetric ? destination : nil)
        if let port = live(key, now: now) {
            // In place, with no copy of the mapping alive: a copy would copy every flow.
            if mappings[key]?.flows[destination].map({ alive($0, now: now) }) != true {
                guard admitFlow(now: now) else { return nil }
                if mappings[key]?.flows[destination] == nil { flowCount += 1 }
                mappings[key]?.flows[destination] = Flow(lastUsed: now, replied: false)
            } else {
                mappings[key]?.flows[destination]?.lastUsed = now
            }
            return Endpoint(.v4(wan), port)
        }
        guard admitFlow(now: now), let port = allocatePort(preferring: source.port, random: &random) else { return nil }
        mappings[key] = Mapping(inside: source, publicPort: port, flows: [destination: Flow(lastUsed: now, replied: false)])
        byPort[port] = key
        flowCount += 1
        return Endpoint(.v4(wan), port)
    }

    /// Where a datagram from `source` to the public `destination` goes inside, or `nil` when the
    /// filter drops it (no mapping, or not from where the mapping sent to). A datagram let in
    /// answers its flow, or starts one (endpoint-independent or address-dependent filtering).
    func inbound(from source: Endpoint, to destination: Endpoint, now: Nanoseconds) -> Endpoint? {
        guard let key = byPort[destination.port], live(key, now: now) != nil, let mapping = mappings[key] else { return nil }
        let allowed: Bool
        switch behaviour {
        case .fullCone: allowed = true
        case .restrictedCone: allowed = mapping.flows.contains { $0.key.address == source.address && alive($0.value, now: now) }
        default: allowed = mapping.flows[source].map { alive($0, now: now) } == true
        }
        guard allowed else { return nil }
        if mapping.flows[source] == nil {
            guard admitFlow(now: now) else { return nil }
            flowCount += 1
        }
        mappings[key]?.flows[source] = Flow(lastUsed: now, replied: true)
        return mapping.inside
    }

    /// Where a datagram from inside to the router's own public `destination` goes with hairpin
    /// NAT: to the mapping's inside endpoint, unfiltered (RFC 4787 REQ-9: the source it arrives
    /// with is the sender's public one).
    func hairpinned(to destination: Endpoint, now: Nanoseconds) -> Endpoint? {
        guard let key = byPort[destination.port], live(key, now: now) != nil else { return nil }
        return mappings[key]?.inside
    }

    private func alive(_ flow: Flow, now: Nanoseconds) -> Bool {
        now - flow.lastUsed <= (flow.replied ? repliedTimeout : unrepliedTimeout)
    }

    /// The mapping's public port while one of its flows lives; an expired mapping is removed.
    private func live(_ key: Key, now: Nanoseconds) -> UInt16? {
        guard let mapping = mappings[key] else { return nil }
        if mapping.flows.values.contains(where: { alive($0, now: now) }) { return mapping.publicPort }
        remove(key)
        return nil
    }

    private func remove(_ key: Key) {
        guard let mapping = mappings.removeValue(forKey: key) else { return }
        flowCount -= mapping.flows.count
        byPort[mapping.publicPort] = nil
    }

    /// Whether one more flow fits: expired ones are swept first once the table is half full.
    private func admitFlow(now: Nanoseconds) -> Bool {
        if flowCount >= flowLimit / 2 { sweep(now: now) }
        guard flowCount < flowLimit else {
            tableFull += 1
            return false
        }
        return true
    }

    /// Drops expired flows, and mappings left with none.
    private func sweep(now: Nanoseconds) {
        for key in Array(mappings.keys) {
            let before = mappings[key]!.flows.count
            mappings[key]!.flows = mappings[key]!.flows.filter { alive($0.value, now: now) }
            flowCount -= before - mappings[key]!.flows.count
            if mappings[key]!.flows.isEmpty { remove(key) }
        }
    }

    /// The inside port when free and the NAT preserves ports, else a random free one of 1024–65535.
    private func allocatePort(preferring port: UInt16, random: inout SimulationRandom) -> UInt16? {
        if behaviour != .symmetric, byPort[port] == nil { return port }
        for _ in 0..<64 {
            let candidate = UInt16.random(in: 1024...65535, using: &random)
            if byPort[candidate] == nil { return candidate }
        }
        return nil
    }
}
