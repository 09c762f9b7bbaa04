import Net
import WireGuard

/// Which of a party member's prefixes this agent gives WireGuard as the peer's allowed IPs and
/// routes through its interface. A member's prefixes come from the party, not from this host's
/// administrator: they may add to what this host routes, never take over what it routes already.
/// The rules, checked in this order (the first that applies is the reason given):
///
/// 1. Host bits set (`100.64.0.2/24`): refused, not normalised. The member meant either the host
///    (`100.64.0.2/32`) or the subnet (`100.64.0.0/24`), and either guess may take the wrong one.
/// 2. A default route (`0.0.0.0/0`, `::/0`): never. A member is not an exit node, as with
///    Tailscale, where using one is the user's own choice.
/// 3. Addresses that are never routed to a peer: loopback (`127.0.0.0/8`, `::1`), link-local
///    (`169.254.0.0/16`, `fe80::/10`), multicast (`224.0.0.0/4`, `ff00::/8`), unspecified
///    (`0.0.0.0/8`, `::`) and broadcast (`255.255.255.255`) — a prefix inside one or containing
///    one. That refuses the halves of the address space too (`0.0.0.0/1`, `128.0.0.0/1`, `::/1`,
///    `8000::/1`), with which wg-quick takes all traffic without replacing the default route.
/// 4. The agent's own addresses: a prefix that contains one (the agent's own subnet included).
///    A prefix inside the agent's own subnet is the normal case: allowed, and routed by the
///    kernel's route for that subnet already.
/// 5. Another peer's prefixes: a prefix equal to, containing or inside one that another peer
///    holds. WireGuard would silently move it from that peer to this one; the first holder keeps
///    it.
/// 6. The kernel's routes through other interfaces: a prefix equal to, containing or inside any
///    route of the main table, or any of this host's own addresses, except a default route (being
///    more specific than it is the normal case). Connected LAN routes, other interfaces' routes and
///    other daemons' routes are never replaced nor shadowed. Routes through the agent's own
///    interface already send their traffic into the tunnel, where rule 5 keeps peers apart: the
///    agent's own, the kernel's for its subnet, and those a run of the agent killed before it could
///    clean up left on an interface it adopts.
/// 7. Addresses the agent reaches outside the tunnel (the control server, STUN servers, relays, the
///    members' endpoints): a prefix containing one would send the agent's own traffic into the
///    tunnel, where it cannot arrive.
///
/// A prefix refused as a route is refused as an allowed IP too: the peer could otherwise send
/// packets from addresses this host routes elsewhere. Everything is decided from the values
/// given; reading them is the caller's job.
struct RoutePolicy {
    /// The agent's WireGuard interface.
    var interfaceName: String
    /// The agent's own addresses with their prefix lengths (its configuration's `Address` lines).
    var ownAddresses: [IPPrefix]
    /// The kernel's routes now (`RouteNetlink.kernelRoutes()`).
    var kernelRoutes: [KernelRoute]
    /// The prefixes other peers hold as allowed IPs, with the peer named for the log.
    var held: [(peer: String, prefix: IPPrefix)]
    /// Addresses the agent reaches outside the tunnel.
    var underlay: [IPAddress]

    /// Why a prefix was refused; `description` says it for a person.
    enum Reason: Equatable, Sendable, CustomStringConvertible {
        case hostBitsSet
        case defaultRoute
        case reserved(name: String, range: IPPrefix)
        case ownAddress(IPPrefix)
        case heldByPeer(String, IPPrefix)
        case kernelRoute(KernelRoute)
        case underlay(IPAddress)

        var description: String {
            switch self {
            case .hostBitsSet:
                "host bits are set: the member should announce the subnet with them cleared, or its own address as /32 (/128)"
            case .defaultRoute:
                "a default route would send all of this host's traffic to the peer; the agent installs none"
            case .reserved(let name, let range):
                "overlaps \(name) \(range), which is never routed to a peer"
            case .ownAddress(let own):
                "overlaps this agent's own address \(own)"
            case .heldByPeer(let peer, let prefix):
                "overlaps \(prefix), which peer \(peer) holds (the first member to announce a prefix keeps it)"
            case .kernelRoute(let route):
                "overlaps this host's route '\(route)', which the agent does not replace nor shadow"
            case .underlay(let address):
                "contains \(address), which the agent reaches outside the tunnel"
            }
        }
    }

    /// What the policy made of one peer's prefixes.
    struct Decision: Equatable, Sendable {
        /// The prefixes WireGuard may take as the peer's allowed IPs, in the member's order.
        var allowedIPs: [IPPrefix] = []
        /// Those of `allowedIPs` that need a route through the agent's interface (the others are
        /// inside the agent's own subnet, which the kernel routes there already).
        var routes: [IPPrefix] = []
        /// Every other prefix, with the reason.
        var refused: [IPPrefix: Reason] = [:]
    }

    /// The ranges of rule 3.
    static let reserved: [(name: String, range: IPPrefix)] = [
        ("the unspecified range", "0.0.0.0/8"), ("loopback", "127.0.0.0/8"), ("link-local", "169.254.0.0/16"),
        ("multicast", "224.0.0.0/4"), ("the broadcast address", "255.255.255.255/32"),
        ("the unspecified address", "::/128"), ("loopback", "::1/128"), ("link-local", "fe80::/10"), ("multicast", "ff00::/8"),
    ].map { ($0.0, IPPrefix($0.1)!) }

    /// Decides each of `prefixes` (a peer's, in the member's order; repeats are dropped).
    func decide(_ prefixes: [IPPrefix]) -> Decision {
        var decision = Decision()
        for prefix in prefixes where !decision.allowedIPs.contains(prefix) && decision.refused[prefix] == nil {
            if let reason = refusal(of: prefix) {
                decision.refused[prefix] = reason
            } else {
                decision.allowedIPs.append(prefix)
                if !ownAddresses.contains(where: { $0.contains(prefix) }) { decision.routes.append(prefix) }
            }
        }
        return decision
    }

    /// Why `prefix` is refused, or nil when it may be used.
    func refusal(of prefix: IPPrefix) -> Reason? {
        if prefix.network != prefix { return .hostBitsSet }
        if prefix.length == 0 { return .defaultRoute }
        if let special = Self.reserved.first(where: { Self.overlap($0.range, prefix) }) { return .reserved(name: special.name, range: special.range) }
        if let own = ownAddresses.first(where: { prefix.contains(IPPrefix($0.address, $0.address.bitCount)!) }) { return .ownAddress(own) }
        if let other = held.first(where: { Self.overlap($0.prefix, prefix) }) { return .heldByPeer(other.peer, other.prefix) }
        if let route = kernelRoutes.first(where: { !$0.isDefault && $0.interfaceName != interfaceName && Self.overlap($0.prefix, prefix) }) {
            return .kernelRoute(route)
        }
        if let address = underlay.first(where: { prefix.contains(IPPrefix($0, $0.bitCount)!) }) { return .underlay(address) }
        return nil
    }

    /// Whether `a` and `b` share an address: one of them contains the other.
    static func overlap(_ a: IPPrefix, _ b: IPPrefix) -> Bool { a.contains(b) || b.contains(a) }
}
