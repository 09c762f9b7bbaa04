import Agent
import Commands
import Net
import Output
import Punch
import STUN

/// `lanrage netcheck [--stun IP:PORT …] [--config FILE] [--port P] [--json]`
enum NetcheckCommand {
    static let command = Command(
        "netcheck",
        abstract: "Find how the local NAT maps and filters UDP (RFC 5780) and name its type.",
        discussion: """
            Sends STUN binding requests from local port P to each server. With a server that has two \
            addresses (OTHER-ADDRESS), runs the RFC 5780 mapping and filtering tests; with one-address \
            servers only, reports what those can tell and says what was not tested. Exits 69 when no \
            server answers. Without --stun, the STUN servers (the control server by default) and the \
            ListenPort of the agent's configuration are used. Then the IPv4 default gateway is asked to map \
            a port (PCP, NAT-PMP and UPnP-IGD; given back at once), unless --no-port-mapping.
            """,
        options: [
            .repeated("stun", "HOST:PORT", help: "A STUN server (an address or a host name); repeat for several. The first with two addresses runs the RFC 5780 tests."),
            .value("config", "FILE", help: "The agent configuration whose STUN servers and ListenPort to use when --stun is not given.",
                   default: "/etc/lanrage/agent.conf"),
            .value("port", "P", help: "Local UDP port to probe from (the WireGuard port; shared through a raw socket when WireGuard listens on it).", default: "0, any; with the configuration, its ListenPort"),
            .flag("json", help: "Print the result as JSON."),
            .flag("no-port-mapping", help: "Do not ask the default gateway for a port mapping."),
            .value("rto", "MS", help: "First retransmission timeout in milliseconds; doubles up to 4× this.", default: "100"),
            .value("tries", "N", help: "Sends per request before giving up.", default: "7"),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        var named = try invocation.values("stun", as: ServerAddress.self)
        var configuredPort: UInt16?
        if named.isEmpty {
            let path = try invocation.value("config", as: String.self) ?? "/etc/lanrage/agent.conf"
            do throws(AgentConfiguration.Problem) {
                let configuration = try AgentConfiguration.load(path)
                named = configuration.stun
                configuredPort = configuration.listenPort
            } catch {
                throw invocation.usageError("no --stun HOST:PORT given, and the agent configuration cannot be used: \(error)")
            }
        }
        let servers = try ServerLookup.endpoints(named)
        guard let first = servers.first else { throw invocation.usageError("missing --stun HOST:PORT") }
        guard servers.allSatisfy({ $0.address.family == first.address.family }) else {
            throw invocation.usageError("all --stun servers must be of one address family")
        }
        let port = try invocation.value("port", as: UInt16.self) ?? configuredPort ?? 0
        let rto = try invocation.value("rto", as: Int.self) ?? 100
        let tries = try invocation.value("tries", as: Int.self) ?? 7
        guard rto > 0, rto <= 60_000 else { throw invocation.usageError("--rto must be 1…60000 ms") }
        guard tries > 0, tries <= 20 else { throw invocation.usageError("--tries must be 1…20") }
        let policy = RetransmissionPolicy(initialRTO: .milliseconds(rto), maxRTO: .milliseconds(4 * rto), attempts: tries,
                                          finalWait: .milliseconds(4 * rto))
        // On a port WireGuard already owns, the probes go through the raw path, so the public
        // endpoint found is the one WireGuard's own traffic gets.
        let json = invocation.flag("json")
        let outcome = try failing { () throws(SystemError) in
            let socket = try openPortSocket(port: port, family: first.address.family)
            return try NATDetector.run(servers: servers, socket: socket, localAddresses: try LocalAddresses.all(), policy: policy)
        }
        switch outcome {
        case .success(let report):
            let probe = invocation.flag("no-port-mapping") ? nil : GatewayProbe.run()
            if json {
                guard case .object(var members) = render(report) else { return .success }
                members.append(("port_mapping", probe?.json ?? .null))
                StandardStreams.out(JSON.object(members).rendered(pretty: true) + "\n")
            } else {
                StandardStreams.out(text(report) + (probe.map { $0.text + "\n" } ?? ""))
            }
            return .success
        case .failure(let failure):
            if json {
                StandardStreams.out(JSON.object([
                    ("error", .string(failure.description)),
                    ("servers", .array(failure.servers.map(render))),
                ]).rendered(pretty: true) + "\n")
            }
            throw CommandError(failure.servers.compactMap { $0.failure }.joined(separator: "; "), exitCode: .unavailable)
        }
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        let micro = Double(seconds) * 1_000_000 + Double(attoseconds / 1_000_000_000_000)
        return (micro / 10).rounded() / 100
    }

    static func render(_ server: ServerReport) -> JSON {
        var members: [(String, JSON)] = [("server", .string(server.server.description))]
        members.append(("rtt_ms", server.roundTrip.map { .double(milliseconds($0)) } ?? .null))
        members.append(("mapped_address", server.mappedAddress.map { .string($0.description) } ?? .null))
        members.append(("other_address", server.otherAddress.map { .string($0.description) } ?? .null))
        if let software = server.software { members.append(("software", .string(software))) }
        if let failure = server.failure { members.append(("error", .string(failure))) }
        return .object(members)
    }

    static func render(_ report: NATReport) -> JSON {
        .object([
            ("nat_type", .string(report.natType.rawValue)),
            ("mapping", .string(report.mapping.rawValue)),
            ("filtering", .string(report.filtering.rawValue)),
            ("public_endpoint", .string(report.publicEndpoint.description)),
            ("local_port", .int(Int64(report.localEndpoint.port))),
            ("port_preserved", .bool(report.portPreserved)),
            ("complete", .bool(report.complete)),
            ("notes", .array(report.notes.map { .string($0) })),
            ("servers", .array(report.servers.map(render))),
        ])
    }

    static func text(_ report: NATReport) -> String {
        var lines = [
            "NAT type:        \(report.natType.rawValue)\(report.complete ? "" : " (incomplete test, see notes)")",
            "Mapping:         \(report.mapping.rawValue)",
            "Filtering:       \(report.filtering.rawValue)",
            "Public endpoint: \(report.publicEndpoint) (local port \(report.localEndpoint.port), \(report.portPreserved ? "preserved" : "not preserved"))",
            "Servers:",
        ]
        for server in report.servers {
            var line = "  \(server.server)"
            if let rtt = server.roundTrip { line += "  rtt \(milliseconds(rtt)) ms" }
            if let mapped = server.mappedAddress { line += "  mapped \(mapped)" }
            if let other = server.otherAddress { line += "  other \(other)" }
            if let failure = server.failure { line += "  \(failure)" }
            lines.append(line)
        }
        if !report.notes.isEmpty { lines.append("Notes:") }
        lines += report.notes.map { "  - \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }
}
