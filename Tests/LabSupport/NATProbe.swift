import Foundation
import Net
import Time

/// Checks that a site's router really behaves as its ruleset means, with plain UDP sockets and no
/// STUN: reflectors on the STUN host's two addresses report the source they see (mapping), then
/// packets from other addresses and ports test what gets through (filtering), then an unsolicited
/// packet must leave no conntrack entry on the router. Every wait is a bounded poll.
public enum NATProbe {
    public struct Observation: CustomStringConvertible, Sendable {
        /// Public endpoints seen by 192.0.2.1:7001, 192.0.2.2:7001 and 192.0.2.2:7002 for one client socket.
        public var mapped: [Endpoint]
        /// Whether a packet from another IP and port, and from the same IP and another port, got through.
        public var otherAddressPasses: Bool
        public var otherPortPasses: Bool
        public var description: String {
            "mapped \(mapped.map(\.description)), from other IP+port passes: \(otherAddressPasses), from other port: \(otherPortPasses)"
        }
    }

    public struct Mismatch: Error, CustomStringConvertible {
        public var site: NATBehaviour
        public var observation: Observation
        public var problem: String
        public var description: String { "lab NAT '\(site)' misbehaves: \(problem) (\(observation))" }
    }

    /// Throws a `Mismatch` unless the site behaves as `site.behaviour` — for a double NAT, the
    /// effective behaviour of both routers, seen from the client.
    public static func verify(_ site: Site, in lab: Lab) throws {
        let observation = try observe(site, in: lab)
        func fail(_ problem: String) -> Mismatch { Mismatch(site: site.behaviour, observation: observation, problem: problem) }
        let m = observation.mapped
        let publicAddress: IPAddress = site.behaviour == .open ? .v4(site.clientAddress) : .v4(site.publicAddress)
        guard m.allSatisfy({ $0.address == publicAddress }) else { throw fail("public address is not \(publicAddress)") }
        switch site.behaviour {
        case .open, .fullCone, .restrictedCone, .portRestrictedCone:
            guard m[0] == m[1], m[1] == m[2] else { throw fail("mapping is not endpoint-independent") }
        case .symmetric:
            // RFC 5780 §4.3: tests I and II differ, and II and III. I and III may coincide: the lab's
            // symmetric NAT picks each port at random, and two destinations can draw the same one.
            guard m[0] != m[1], m[1] != m[2] else { throw fail("mapping is not address-and-port-dependent") }
        }
        let (ip, port): (Bool, Bool)
        switch site.behaviour {
        case .open, .fullCone: (ip, port) = (true, true)
        case .restrictedCone: (ip, port) = (false, true)
        case .portRestrictedCone, .symmetric: (ip, port) = (false, false)
        }
        guard observation.otherAddressPasses == ip, observation.otherPortPasses == port else {
            throw fail("filtering is not \(site.behaviour.expected.filtering)")
        }
        if site.behaviour != .open { try checkUnsolicitedDrop(site, in: lab) }
    }

    public static func observe(_ site: Site, in lab: Lab) throws -> Observation {
        let a = Endpoint(.v4(Lab.stunPrimary), 7001), b = Endpoint(.v4(Lab.stunAlternate), 7001)
        let c = Endpoint(.v4(Lab.stunAlternate), 7002), d = Endpoint(.v4(Lab.stunPrimary), 7002)
        let reflectors = try [a, b, c, d].map { try lab.stunHost.udpSocket(binding: $0) }
        let any = Endpoint(.v4(IPv4Address(0)), 0)

        // Mapping: one client socket, three destinations.
        let client = try site.client.udpSocket(binding: any)
        var mapped: [Endpoint] = []
        for (index, reflector) in reflectors[0..<3].enumerated() {
            try client.send(Array("map".utf8), to: reflector.local)
            guard let (_, from) = try receive(on: reflector, within: .seconds(2)) else {
                throw CommandFailure(command: ["probe"], status: 1, output: "reflector \(index) heard nothing from \(site.behaviour) site")
            }
            mapped.append(from)
        }

        // Filtering: a fresh client socket contacts 192.0.2.1:7001 only; then three senders answer.
        let fresh = try site.client.udpSocket(binding: any)
        try fresh.send(Array("hello".utf8), to: a)
        guard let (_, publicEndpoint) = try receive(on: reflectors[0], within: .seconds(2)) else {
            throw CommandFailure(command: ["probe"], status: 1, output: "no packet from the fresh socket")
        }
        try reflectors[2].send(Array("other-ip".utf8), to: publicEndpoint)
        try reflectors[3].send(Array("other-port".utf8), to: publicEndpoint)
        try reflectors[0].send(Array("control".utf8), to: publicEndpoint)
        var heard: Set<String> = []
        let deadline = MonotonicTime.now() + .seconds(2)
        var quietUntil: Duration?
        while MonotonicTime.now() < (quietUntil ?? deadline) {
            let left = (quietUntil ?? deadline) - MonotonicTime.now()
            guard let (text, _) = try receive(on: fresh, within: left, buffer: 64) else { break }
            heard.insert(text)
            if heard.contains("control"), quietUntil == nil { quietUntil = MonotonicTime.now() + .milliseconds(300) }
        }
        guard heard.contains("control") else {
            throw CommandFailure(command: ["probe"], status: 1, output: "the reply from the contacted reflector did not come back")
        }
        return Observation(mapped: mapped, otherAddressPasses: heard.contains("other-ip"), otherPortPasses: heard.contains("other-port"))
    }

    /// An unsolicited packet to the router's WAN must be dropped without a conntrack entry, or it
    /// would steal the port a later outbound flow would have kept.
    static func checkUnsolicitedDrop(_ site: Site, in lab: Lab) throws {
        let sender = try lab.stunHost.udpSocket(binding: Endpoint(.v4(Lab.stunPrimary), 7003))
        let target = Endpoint(.v4(site.publicAddress), 45999)
        try sender.send(Array("unsolicited".utf8), to: target)
        // The packet crosses two hops; give it a bounded moment, then look for an entry.
        usleep(100_000)
        let entries = try site.router.run(["conntrack", "-L", "-p", "udp", "--dport", "45999"], allowFailure: true)
        if entries.contains("dport=45999") {
            throw Mismatch(site: site.behaviour, observation: Observation(mapped: [], otherAddressPasses: false, otherPortPasses: false),
                           problem: "an unsolicited inbound packet left a conntrack entry: \(entries)")
        }
    }

    /// The next datagram on `socket` as text, with its source, or `nil` after `timeout`.
    public static func receive(on socket: UDPSocket, within timeout: Duration, buffer size: Int = 256) throws -> (String, Endpoint)? {
        let deadline = MonotonicTime.now() + timeout
        var buffer = [UInt8](repeating: 0, count: size)
        while true {
            if let (count, from) = try socket.receive(into: &buffer) {
                return (String(decoding: buffer[..<count], as: UTF8.self), from)
            }
            let left = deadline - MonotonicTime.now()
            if left <= .zero { return nil }
            _ = try Readiness.readable([socket.descriptor], timeout: left)
        }
    }
}
