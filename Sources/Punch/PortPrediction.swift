import Net

/// Which ports of a symmetric NAT to probe, when the other side filters by port
/// (port-restricted cone ↔ symmetric).
///
/// The symmetric side's NAT gives its WireGuard port a new public port for each destination. Its
/// STUN probes showed some of them, in order. When they were allocated one after the other
/// (constant small step), the mapping toward the peer is most likely the next few in that
/// sequence. Otherwise the allocation is random and only a spray over the NAT's port range can
/// hit it — with `budget` probes out of `range.count` ports, the chance is `budget / range.count`
/// per attempt, which the lab measures.
public struct PortPrediction: Equatable, Sendable {
    public enum Method: String, Sendable {
        /// The observed ports advance by a constant step: probe the next ones.
        case sequential
        /// No pattern: probe random ports of the range.
        case random
    }

    public let method: Method
    /// The ports to probe, most likely first, at most `budget`, no duplicates.
    public let ports: [UInt16]

    /// Port-restricted ↔ symmetric, what the port-restricted side sprays: ``DirectPathPlan/sprayGuesses``
    /// random ports of the symmetric peer's public `address` (``PunchDriver/probe(_:_:)`` sends them).
    public static func spray(at address: IPAddress, using generator: inout some RandomNumberGenerator) -> [Endpoint] {
        PortPrediction(observed: [], budget: DirectPathPlan.sprayGuesses, using: &generator).ports.map { Endpoint(address, $0) }
    }

    /// The largest step between consecutive allocations still called sequential.
    public static let maximumStep = 16

    public init(
        observed: [UInt16], budget: Int, range: ClosedRange<UInt16> = 1024...65535,
        using generator: inout some RandomNumberGenerator
    ) {
        let budget = max(0, min(budget, range.count))
        let steps = zip(observed, observed.dropFirst()).map { Int($1) - Int($0) }
        if let step = steps.first, step != 0, abs(step) <= PortPrediction.maximumStep, steps.allSatisfy({ $0 == step }),
           let last = observed.last {
            method = .sequential
            var ports: [UInt16] = []
            var next = Int(last)
            // The peer's mapping is the next allocation, unless other flows took some first: walk on.
            while ports.count < budget {
                next += step
                if next > Int(range.upperBound) { next = Int(range.lowerBound) + (next - Int(range.upperBound) - 1) }
                if next < Int(range.lowerBound) { next = Int(range.upperBound) - (Int(range.lowerBound) - next - 1) }
                ports.append(UInt16(next))
            }
            self.ports = ports
        } else {
            method = .random
            var chosen = Set<UInt16>()
            var ports: [UInt16] = []
            while ports.count < budget {
                let port = UInt16.random(in: range, using: &generator)
                if chosen.insert(port).inserted { ports.append(port) }
            }
            self.ports = ports
        }
    }

    /// The chance that `probes` random probes over a range of `rangeSize` ports hit the one open mapping.
    public static func randomHitChance(probes: Int, rangeSize: Int) -> Double {
        Double(min(probes, rangeSize)) / Double(rangeSize)
    }
}
