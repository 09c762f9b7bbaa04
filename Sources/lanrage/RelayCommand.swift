import CLinux
import Agent
import Commands
import EventLoop
import Output
import Net
import Relay
import Rendezvous

/// `lanrage relay --listen IP [--listen IPv6] --ports LOW-HIGH --secret-file FILE`
enum RelayCommand {
    struct PortRange: ArgumentValue {
        let range: ClosedRange<UInt16>
        init?(argument: String) {
            guard let dash = argument.firstIndex(of: "-"),
                  let low = UInt16(argument[..<dash]), let high = UInt16(argument[argument.index(after: dash)...]),
                  low > 0, Int(high) - Int(low) >= 2 else { return nil }
            range = low...high
        }
        static var expectation: String { "LOW-HIGH with at least three ports, e.g. 40000-40999" }
    }

    static let command = Command(
        "relay",
        abstract: "Relay WireGuard between members whose punch failed: one UDP port per side of each pair, no framing.",
        discussion: """
            The first port of the range is the service port (allocation requests, load queries; name it in \
            lanrage control --relay IP:PORT); the others are allocated two per pair. An allocation is granted \
            only for a token issued by the control server under the shared secret (each token once), forwards \
            each side's traffic only from the source that latched the side with a latch datagram authenticated \
            for its token, from the address the token names, and is freed after --idle-timeout seconds without traffic. \
            SIGHUP logs the counters, and each allocation's packets, bytes and drops per side.
            """,
        options: [
            .repeated("listen", "IP", help: "Address to listen on; once per family for IPv4 and IPv6."),
            .value("ports", "LOW-HIGH", help: "Port range: service port, then allocation ports."),
            .value("secret-file", "FILE", help: "Secret shared with the control server (mode 0600)."),
            .value("idle-timeout", "SECONDS", help: "Free an allocation after this long without traffic.", default: "120"),
            .value("max-per-party", "N", help: "Allocations one party may hold at once.", default: "256"),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        var addresses: [IPAddress] = []
        for text in try invocation.values("listen", as: String.self) {
            guard let address = IPAddress(text) else { throw invocation.usageError("invalid --listen '\(text)' (expected an IPv4 or IPv6 address)") }
            addresses.append(address)
        }
        guard !addresses.isEmpty else { throw invocation.usageError("missing --listen IP") }
        guard addresses.count == 1 || (addresses.count == 2 && addresses[0].family != addresses[1].family) else {
            throw invocation.usageError("--listen: at most one IPv4 and one IPv6 address")
        }
        guard let ports = try invocation.value("ports", as: PortRange.self) else { throw invocation.usageError("missing --ports LOW-HIGH") }
        guard let secretPath = try invocation.value("secret-file", as: String.self) else { throw invocation.usageError("missing --secret-file FILE") }
        var secret = try failing { () throws(SecretFile.Problem) in try SecretFile.read(secretPath) }
        var configuration = RelayServer.Configuration(listen: addresses, ports: ports.range, key: Keys.relayKey(secret: secret))
        Crypto.wipe(&secret)
        let idle = try invocation.value("idle-timeout", as: Int.self) ?? 120
        guard idle > 0 else { throw invocation.usageError("--idle-timeout must be positive") }
        configuration.idleTimeout = .seconds(idle)
        configuration.maxPerParty = max(1, try invocation.value("max-per-party", as: Int.self) ?? configuration.maxPerParty)
        let settings = configuration
        let loop = try failing { () throws(SystemError) in try EventLoop() }
        let relay = try failing { () throws(SystemError) in try RelayServer(settings, loop: loop) }
        let logger = Logger(label: "lanrage.relay")
        try failing { () throws(SystemError) in try loop.handleSignals { signal in
            if signal == SIGHUP {
                logger.info("counters", metadata: relay.summary)
                for allocation in relay.allocations.values { logger.info("allocation", metadata: RelayCore.report(allocation)) }
            } else {
                loop.stop()
            }
        } }
        logger.info("listening", metadata: ["service": "\(relay.services.map { $0.local.description }.joined(separator: ","))", "ports": "\(ports.range.lowerBound)-\(ports.range.upperBound)",
                                            "capacity": "\(configuration.capacity)", "idle_timeout_s": "\(idle)"])
        try failing { () throws(SystemError) in try loop.run() }
        logger.info("counters", metadata: relay.summary)
        return .success
    }
}
