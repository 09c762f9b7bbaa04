import Net
import STUN

/// Whether and how to try a direct path between two members, from their NAT behaviours:
/// the seed's compatibility table, stated in RFC 4787 terms.
///
/// A simultaneous open works when every packet can find its way in:
/// - both mappings endpoint-independent (open, full, restricted or port-restricted cone, in any
///   combination): each side's reflexive endpoint is the one it uses toward the other, and its
///   own outbound punch opens its filter for exactly the other's endpoint;
/// - one mapping depends on the destination (symmetric) and the other side filters by address at
///   most (open, full cone, restricted cone): the symmetric side's punch arrives from an unknown
///   port, passes the other side's filter, and its source becomes a peer-reflexive candidate;
/// - symmetric against port-restricted: the port-restricted side must send to the symmetric
///   side's exact new port first: it sprays guesses, and the symmetric side opens many mappings
///   at once from a fan of extra ports so that a guess needs to hit only one (the agent's
///   `Agent+PortFan`; `lanrage punch` has the WireGuard port only and guesses alone);
/// - symmetric against symmetric: neither side can know the other's port: relay.
/// Unknown behaviour is tried directly: an attempt costs a few packets, a failure falls back to
/// the relay regardless. Two members that reach the Internet from one public address are most
/// likely behind one router (a house, an office): their LAN addresses are candidates and no NAT
/// stands between them, so they punch whatever their NATs (behind one carrier-grade NAT instead,
/// the attempt fails and the relay carries on).
public enum DirectPathPlan: String, Sendable, Equatable {
    /// Punch every candidate.
    case punch
    /// Punch, and the port-restricted side also probes guessed ports of the symmetric side.
    case punchWithPortPrediction = "punch with port prediction"
    /// Go to the relay at once.
    case relay

    /// The plan for members behind `local` and `remote`; `withoutNAT` when a path without NAT
    /// between them is likely (both reach the Internet from one public address, or both have IPv6).
    public init(local: NATType, remote: NATType, withoutNAT: Bool = false) {
        if withoutNAT {
            self = .punch
            return
        }
        switch (local, remote) {
        case (.symmetric, .symmetric):
            self = .relay
        case (.symmetric, .portRestrictedCone), (.portRestrictedCone, .symmetric):
            self = .punchWithPortPrediction
        default:
            self = .punch
        }
    }

    /// Port prediction, per attempt: the symmetric side punches from this many fan ports (each its
    /// own mapping toward the peer)…
    public static let fanPorts = 256
    /// …while the port-restricted side sprays PUNCHes at this many random ports of the symmetric
    /// side's public address. Any guess that hits any fan port opens the path: with 256 and 1,024
    /// over 64,512 ports, 1 − (1 − 256/64,512)^1,024 ≈ 98 % of attempts succeed.
    public static let sprayGuesses = 1024

    /// Whether a direct attempt is worth making at all (the peer chart's `directPossible`).
    public var directPossible: Bool { self != .relay }
}

/// This side's part in port prediction, for one attempt (see ``DirectPathPlan/punchWithPortPrediction``).
public enum PortPredictionRole: Sendable, Equatable {
    /// None: the plan does not predict ports, or what the role needs is unknown.
    case none
    /// Port-restricted: spray ``DirectPathPlan/sprayGuesses`` PUNCHes at random ports of this address.
    case spray(at: IPAddress)
    /// Symmetric: punch from ``DirectPathPlan/fanPorts`` extra ports toward this endpoint.
    case fan(toward: Endpoint)

    /// The role of a side whose NAT is `local` toward a peer behind `remote`, which announced the
    /// reflexive endpoint `reachable` and whose messages the control server saw come from
    /// `observed`. Only toward the observed address: a claimed endpoint elsewhere would have this
    /// side spray or fan at a third party. None where a path without NAT is likely (the LAN or
    /// IPv6 addresses are punched instead).
    public init(local: NATType, remote: NATType, observed: IPAddress?, reachable: Endpoint?, withoutNAT: Bool = false) {
        guard DirectPathPlan(local: local, remote: remote, withoutNAT: withoutNAT) == .punchWithPortPrediction,
              let observed else {
            self = .none
            return
        }
        if local == .portRestrictedCone {
            self = .spray(at: observed)
        } else if let reachable, reachable.address == observed {
            self = .fan(toward: reachable)
        } else {
            self = .none
        }
    }
}
