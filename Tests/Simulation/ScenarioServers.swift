import Net
import Time

/// What every scenario's Internet holds, and how every scenario starts: an RFC 5780 STUN server
/// the members detect their NAT against, then a relay their WireGuard keepalives go through.
final class ScenarioServers {
    static let stunPrimary = Endpoint("192.0.2.1:3478")!
    static let stunAlternate = Endpoint("192.0.2.2:3479")!
    static let relayEndpoint = Endpoint("192.0.2.20:3480")!
    private let stun: SimulatedSTUNServer
    private var relay: SimulatedRelay?

    init(on network: SimulatedNetwork) {
        stun = SimulatedSTUNServer(on: network, primary: Self.stunPrimary, alternate: Self.stunAlternate)
    }

    /// Every member detects its NAT, each starting within 300 ms, for at most 10 s; from then on,
    /// given a `keepalive`, each member's WireGuard keeps its mapping in use through the relay,
    /// every `keepalive`, the first at a random point of the interval.
    func detect(_ members: [SimulatedMember], keepalive: Duration?, on network: SimulatedNetwork) {
        for member in members {
            network.after(.nanoseconds(network.random.nanoseconds(in: 0...300_000_000))) {
                member.detector.start(servers: [Self.stunPrimary], localAddresses: [.v4(member.host.address)])
            }
        }
        network.run(until: network.clock.now + 10_000_000_000) { members.allSatisfy { $0.detection != nil } }
        guard let keepalive else { return }
        relay = SimulatedRelay(on: network, at: Self.relayEndpoint)
        for member in members {
            let first = Duration.nanoseconds(network.random.nanoseconds(in: 0...keepalive.nanoseconds))
            member.keepAlive(through: Self.relayEndpoint, every: keepalive, first: first)
        }
    }
}
