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
/// the relay regardless.
public enum DirectPathPlan: String, Sendable, Equatable {
    /// Punch every candidate.
    case punch
    /// Punch, and the port-restricted side also probes guessed ports of the symmetric side.
    case punchWithPortPrediction = "punch with port prediction"
    /// Go to the relay at once.
    case relay

    public init(local: NATType, remote: NATType) {
        switch (local, remote) {
        case (.symmetric, .symmetric):
            self = .relay
        case (.symmetric, .portRestrictedCone), (.portRestrictedCone, .symmetric):
            self = .punchWithPortPrediction
        default:
            self = .punch
        }
    }

    /// Whether a direct attempt is worth making at all (the peer chart's `directPossible`).
    public var directPossible: Bool { self != .relay }
}
