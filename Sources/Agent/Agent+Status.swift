import Control
import DNS
import EventLoop
import Net
import Output
import Peer
import Punch
import Rendezvous
import STUN
import StateChart
import WireGuard
import Time

/// What `lanrage status` and `lanrage ping` ask the agent over its status socket.
extension Agent {
    func answer(_ request: String) -> String {
        let words = request.split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first {
        case "status":
            device = nil
            return words.count > 1 && words[1] == "json" ? statusJSON().rendered(pretty: true) + "\n" : statusText()
        case "health":
            device = nil
            return healthLine()
        case "peer" where words.count == 2:
            guard let link = findPeer(words[1]) else { return "error=no peer matches '\(words[1])'\n" }
            let state = scheduler.machine(link.machine)
            let address = link.record.addresses.first.map { "\($0.address)" } ?? "-"
            let peer = readDevice()?.peer(link.io.publicKey)
            let endpoint = Self.endpoint(link, peer) ?? link.path?.endpoint
            return "address=\(address) key=\(link.record.key) state=\(state.map { "\($0.state)" } ?? "closed") "
                + "path=\(path(link, state?.context.path ?? .none, peer).rawValue) endpoint=\(endpoint.map { "\($0)" } ?? "-") "
                + "relay=\(link.relay.map { "\($0.service)" } ?? "-")\n"
        default:
            return "error=unknown request (expected 'status', 'status json', 'health' or 'peer QUERY')\n"
        }
    }

    /// A peer by overlay address, public key (base64) or key id prefix (hex, as logs show it).
    func findPeer(_ query: String) -> AgentLink? {
        if let address = IPAddress(query), let host = IPPrefix(address, address.family == 2 ? 32 : 128) {
            return links.values.first { $0.record.addresses.contains { $0.contains(host) } }
        }
        if let key = Key(base64: query) { return links.values.first { $0.io.publicKey == key } }
        let lowered = query.asciiLowercased
        let matches = links.values.filter { "\($0.record.key)".hasPrefix(lowered) }
        return matches.count == 1 && !lowered.isEmpty ? matches[0] : nil
    }

    /// The peer's endpoint: WireGuard's own (it follows the peer when it roams), or, when a fan
    /// port's forwarder carries the peer (WireGuard then sends to loopback), the peer's address.
    static func endpoint(_ link: AgentLink, _ peer: WireGuard.Peer?) -> Endpoint? {
        link.io.forwarder?.remote ?? peer?.endpoint
    }

    private struct PeerStatus {
        var link: AgentLink
        var state: PeerState
        var path: PeerContext.Path
        var seconds: Double
        var peer: WireGuard.Peer?
    }

    private func peerStatuses() -> [PeerStatus] {
        let current = readDevice()
        return links.values.sorted { $0.record.key < $1.record.key }.map { link in
            let machine = scheduler.machine(link.machine)
            let peer = current?.peer(link.io.publicKey)
            return PeerStatus(link: link, state: machine?.state ?? .closed, path: path(link, machine?.context.path ?? .none, peer),
                              seconds: Double(clock.now - link.stateSince) / 1e9, peer: peer)
        }
    }

    /// The path as WireGuard takes it: an endpoint at a relay is relayed whatever the machine chose
    /// (WireGuard roams to the source of the latest packet it authenticates).
    private func path(_ link: AgentLink, _ chosen: PeerContext.Path, _ peer: WireGuard.Peer?) -> PeerContext.Path {
        guard link.io.forwarder == nil, let endpoint = peer?.endpoint, peers.isRelay(endpoint, of: link) else { return chosen }
        return .relayed
    }

    /// `registered=yes|no state=STATE problem=KIND|- peers=N down=ID,…`: what `lanrage status` exits by. A peer is
    /// down when its machine is not in Keepalive and WireGuard has had no handshake with it for 180 s
    /// (WireGuard's session lifetime): an upgrade attempt over a relay that carries is not down.
    func healthLine() -> String {
        let statuses = peerStatuses()
        let down = statuses.filter { PeerConnection.isDown(in: $0.state, path: $0.path, handshakeAge: handshakeAge($0.peer)) }
        return "registered=\(control.state == .registered ? "yes" : "no") state=\(control.state) problem=\(problem?.kind ?? "-") peers=\(statuses.count) "
            + "down=\(down.isEmpty ? "-" : down.map { "\($0.link.record.key)" }.joined(separator: ","))\n"
    }

    private func handshakeAge(_ peer: WireGuard.Peer?) -> Int64? {
        peer?.lastHandshake.map { max(0, clock.wallMilliseconds / 1000 - $0.seconds) }
    }

    func statusJSON() -> JSON {
        let peers: [JSON] = peerStatuses().map { status in
            .object([
                ("public_key", .string(status.link.io.publicKey.base64)),
                ("id", .string("\(status.link.record.key)")),
                ("addresses", .array(status.link.record.addresses.map { .string("\($0)") })),
                ("state", .string("\(status.state)")),
                ("state_seconds", .double((status.seconds * 10).rounded() / 10)),
                ("path", .string(status.path.rawValue)),
                ("endpoint", Self.endpoint(status.link, status.peer).map { .string("\($0)") } ?? .null),
                ("fan_port", status.link.io.forwarder.map { .int(Int64($0.outside.port)) } ?? .null),
                ("relay", status.link.relay.map { .string("\($0.service)") } ?? .null),
                ("nat", .string("\(status.link.record.nat)")),
                ("local_nat", .string("\(natType)")),
                ("latest_handshake_seconds", handshakeAge(status.peer).map { .int($0) } ?? .null),
                ("rx_bytes", .int(Int64(clamping: status.peer?.rxBytes ?? 0))),
                ("tx_bytes", .int(Int64(clamping: status.peer?.txBytes ?? 0))),
            ])
        }
        return .object([
            ("interface", .string(configuration.interfaceName)),
            ("backend", .string(backend.kind.rawValue)),
            ("public_key", .string(publicKey.base64)),
            ("listen_port", .int(Int64(configuration.listenPort))),
            ("mtu", .int(Int64(mtu))),
            ("addresses", .array(configuration.addresses.map { .string("\($0)") })),
            ("nat", .object([
                ("type", .string("\(natType)")),
                ("public_endpoint", report.map { .string("\($0.publicEndpoint)") } ?? .null),
                ("mapping", report.map { .string($0.mapping.rawValue) } ?? .null),
                ("filtering", report.map { .string($0.filtering.rawValue) } ?? .null),
            ])),
            ("port_mapping", portMappingJSON),
            ("control", .object([
                ("server", .string("\(configuration.control)")),
                ("address", controlAddress),
                ("party", .string(configuration.party)),
                ("state", .string("\(control.state)")),
                ("registrations", .int(Int64(control.registrations))),
                ("updates", .int(Int64(control.updates))),
                ("problem", problem.map { $0.json(server: configuration.control) } ?? .null),
            ])),
            ("uptime_seconds", .int((clock.now - startedAt) / 1_000_000_000)),
            ("peers", .array(peers)),
        ])
    }

    /// The control server's address (its name's current one), for `status --json`.
    private var controlAddress: JSON {
        guard let endpoint = names.endpoint(configuration.control) else { return .null }
        return .string("\(endpoint)")
    }

    /// The control server as configured, with its name's current address.
    private var controlText: String {
        guard configuration.control.name != nil else { return "\(configuration.control)" }
        return "\(configuration.control) (\(names.endpoint(configuration.control).map { "\($0)" } ?? "not resolved"))"
    }

    func statusText() -> String {
        var text = """
            interface: \(configuration.interfaceName) (\(backend.kind.rawValue))
              public key: \(publicKey.base64)
              listening port: \(configuration.listenPort), mtu \(mtu)
              addresses: \(configuration.addresses.map { "\($0)" }.joined(separator: ", "))
              nat: \(natType)\(report.map { ", public endpoint \($0.publicEndpoint)" } ?? "")
              port mapping: \(portMappingText)
              control: \(controlText) party \(configuration.party), \(control.state)
            \(problem.map { "  problem: \($0.explanation(server: configuration.control))\n" } ?? "")
            """
        for status in peerStatuses() {
            let path: String
            switch status.path {
            case .direct: path = "direct" + (status.link.io.forwarder.map { " from fan port \($0.outside.port)" } ?? "")
            case .relayed: path = "relayed" + (status.link.relay.map { " via \($0.service)" } ?? "")
            case .none: path = "none yet"
            }
            text += """

                peer: \(status.link.io.publicKey.base64) (\(status.link.record.key))
                  addresses: \(status.link.record.addresses.map { "\($0)" }.joined(separator: ", "))
                  state: \(status.state) for \(Self.seconds(status.seconds))
                  path: \(path)\(Self.endpoint(status.link, status.peer).map { ", endpoint \($0)" } ?? "")
                  nat: \(status.link.record.nat) (ours: \(natType))
                  latest handshake: \(handshakeAge(status.peer).map { "\($0) s ago" } ?? "none")
                  transfer: \(status.peer?.rxBytes ?? 0) B received, \(status.peer?.txBytes ?? 0) B sent

                """
        }
        return text
    }

    static func seconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }

    /// The gateway's mapping, for `lanrage status`.
    private var portMappingText: String {
        guard let mapper = portMapper else { return configuration.portMapping.isEmpty ? "off" : "no IPv4 default gateway" }
        guard let mapped = mapper.machine.mapped else { return "none from \(mapper.gateway)" }
        return "\(mapped.protocolUsed.rawValue) \(mapped.external) for \(mapped.lifetime) s from \(mapper.gateway)"
            + (usableMapping == nil ? " (not on the public address: unused)" : "")
    }

    /// The gateway's mapping, for `status --json`: null without a gateway to ask.
    private var portMappingJSON: JSON {
        guard let mapper = portMapper else { return .null }
        let mapped = mapper.machine.mapped
        let fields: [(String, JSON)] = [
            ("gateway", .string("\(mapper.gateway)")),
            ("protocol", mapped.map { JSON.string($0.protocolUsed.rawValue) } ?? .null),
            ("external", mapped.map { JSON.string("\($0.external)") } ?? .null),
            ("lifetime_s", mapped.map { JSON.int(Int64($0.lifetime)) } ?? .null),
            ("usable", .bool(usableMapping != nil)),
        ]
        return .object(fields)
    }
}
