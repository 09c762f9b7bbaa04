import Net
import STUN
import Time

/// A home router's NAT, as the lab's nftables rulesets make it (Tests/LabSupport/Lab.swift):
/// endpoint-independent mapping that keeps the inside port when it is free ("masquerade
/// persistent"), or a new random port per destination for symmetric ("masquerade random,
/// fully-random"); filtering by nothing, by remote address or by remote endpoint; unsolicited
/// inbound datagrams dropped; conntrack's UDP timeouts (30 s for a flow with no reply, 120 s once
/// answered); hairpinning only when enabled.
public final class SimulatedRouter {
    public let name: String
    /// Full cone, restricted cone, port-restricted cone or symmetric.
    public let behaviour: NATType
    /// The public (WAN) address.
    public let wan: IPv4Address
    /// The segment the WAN side is on (0: the Internet; else the LAN of the router in front).
    let outside: Int
    /// The segment of the LAN behind the router.
    let inside: Int
    /// Whether a datagram from the LAN to the router's own public address is sent back in (hairpin NAT).
    public var hairpin = false
    /// How long a mapping lives with no reply seen, and once answered (conntrack's
    /// nf_conntrack_udp_timeout and _stream).
    public var unrepliedTimeout: Nanoseconds = 30_000_000_000
    public var repliedTimeout: Nanoseconds = 120_000_000_000
    /// The most mappings held; a full table maps nothing new.
    public static let mappingLimit = 4096
    /// The most flows (mapping, destination) tracked, as conntrack's table limit: a new one beyond
    /// it is dropped.
    public static let flowLimit = 65536
    private var flows = 0

    struct Mapping {
        var inside: Endpoint
        var publicPort: UInt16
        /// Remote endpoints this mapping sent to.
        var contacted: Set<Endpoint>
        var lastUsed: Nanoseconds
        var replied: Bool
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

    /// Mappings held now (expired ones count until a lookup or a new mapping meets them).
    public var mappingCount: Int { mappings.count }
    /// Flows tracked now.
    public var flowCount: Int { flows }

    /// Forgets every mapping (conntrack -F, or the router rebooted).
    public func flush() {
        mappings = [:]
        byPort = [:]
        flows = 0
    }

    /// The public source of a datagram from `source` inside to `destination` outside, creating or
    /// refreshing the mapping; `nil` when the table is full.
    func outbound(from source: Endpoint, to destination: Endpoint, now: Nanoseconds, random: inout SimulationRandom) -> Endpoint? {
        let key = Key(inside: source, remote: behaviour == .symmetric ? destination : nil)
        if let lastUsed = mappings[key]?.lastUsed, !expired(key, lastUsed: lastUsed, now: now) {
            // In place, with no copy of the mapping alive: a copy would copy the set of every
            // destination the mapping sent to.
            if mappings[key]?.contacted.contains(destination) == false {
                guard flows < Self.flowLimit else { return nil }
                mappings[key]?.contacted.insert(destination)
                flows += 1
            }
            mappings[key]?.lastUsed = now
            return mappings[key].map { Endpoint(.v4(wan), $0.publicPort) }
        }
        if let stale = mappings[key] { remove(key, stale) }
        sweep(now: now)
        guard mappings.count < Self.mappingLimit, flows < Self.flowLimit, let port = allocatePort(preferring: source.port, random: &random) else { return nil }
        mappings[key] = Mapping(inside: source, publicPort: port, contacted: [destination], lastUsed: now, replied: false)
        byPort[port] = key
        flows += 1
        return Endpoint(.v4(wan), port)
    }

    /// Where a datagram from `source` to the public `destination` goes inside, or `nil` when the
    /// filter drops it (no mapping, or not from where the mapping sent to).
    func inbound(from source: Endpoint, to destination: Endpoint, now: Nanoseconds) -> Endpoint? {
        guard let key = byPort[destination.port], let lastUsed = mappings[key]?.lastUsed else { return nil }
        if expired(key, lastUsed: lastUsed, now: now) {
            remove(key, mappings[key]!)
            return nil
        }
        let allowed: Bool
        switch behaviour {
        case .fullCone: allowed = true
        case .restrictedCone: allowed = mappings[key]?.contacted.contains { $0.address == source.address } == true
        default: allowed = mappings[key]?.contacted.contains(source) == true
        }
        guard allowed else { return nil }
        mappings[key]?.replied = true
        mappings[key]?.lastUsed = now
        return mappings[key]?.inside
    }

    /// Where a datagram from inside to the router's own public `destination` goes with hairpin
    /// NAT: to the mapping's inside endpoint, unfiltered (RFC 4787 REQ-9: the source it arrives
    /// with is the sender's public one).
    func hairpinned(to destination: Endpoint, now: Nanoseconds) -> Endpoint? {
        guard let key = byPort[destination.port], let lastUsed = mappings[key]?.lastUsed,
              !expired(key, lastUsed: lastUsed, now: now) else { return nil }
        return mappings[key]?.inside
    }

    private func expired(_ mapping: Mapping, now: Nanoseconds) -> Bool {
        now - mapping.lastUsed > (mapping.replied ? repliedTimeout : unrepliedTimeout)
    }

    private func expired(_ key: Key, lastUsed: Nanoseconds, now: Nanoseconds) -> Bool {
        now - lastUsed > (mappings[key]?.replied == true ? repliedTimeout : unrepliedTimeout)
    }

    private func remove(_ key: Key, _ mapping: Mapping) {
        flows -= mapping.contacted.count
        mappings[key] = nil
        byPort[mapping.publicPort] = nil
    }

    /// Drops expired mappings once the table is half full, so that it stays bounded by use, not by history.
    private func sweep(now: Nanoseconds) {
        guard mappings.count >= Self.mappingLimit / 2 else { return }
        for (key, mapping) in mappings where expired(mapping, now: now) { remove(key, mapping) }
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
