#if canImport(Glibc)
import Glibc
#endif
import Agent
import Commands
import Control
import EventLoop
import Logging
import Net
import Rendezvous

/// `lanrage control --listen IP:PORT [--alternate IP:PORT] --state DIR [--relay IP:PORT …]`
enum ControlCommand {
    static let command = Command(
        "control",
        abstract: "Run the rendezvous server: parties, registry with pushes, punch coordination, relay offers, STUN on the same port.",
        discussion: """
            Parties are created (or their secret changed) with --party NAME=SECRET_FILE and kept in DIR/control.state \
            with their members; a restarted server restores them and members re-register by themselves. Every \
            message is authenticated with HMAC-SHA256 under a key derived from the party secret and carries a \
            timestamp and nonce; anything else is dropped and counted. SIGHUP logs the counters.
            """,
        options: [
            .value("listen", "IP:PORT", help: "Address and port for control and STUN."),
            .value("alternate", "IP:PORT", help: "Alternate address and port for RFC 5780 STUN (OTHER-ADDRESS)."),
            .value("state", "DIR", help: "Directory holding the persistent state (created 0700 if missing)."),
            .repeated("party", "NAME=FILE", help: "Create the party NAME with the secret in FILE (mode 0600), or change its secret."),
            .repeated("relay", "IP:PORT", help: "A relay's service endpoint (the first port of its range)."),
            .value("relay-secret-file", "FILE", help: "Secret shared with the relays, for their tokens."),
            .value("heartbeat", "SECONDS", help: "Heartbeat interval given to members.", default: "10"),
            .value("member-timeout", "SECONDS", help: "A member silent this long is gone.", default: "30"),
            .value("rate-limit", "N", help: "Messages per second accepted from one source IP (burst 2N).", default: "50"),
        ]
    ) { invocation in
        guard let listen = try invocation.value("listen", as: Endpoint.self) else { throw invocation.usageError("missing --listen IP:PORT") }
        let alternate = try invocation.value("alternate", as: Endpoint.self)
        if let alternate, alternate.address == listen.address || alternate.port == listen.port {
            throw invocation.usageError("--alternate must differ from --listen in both IP and port")
        }
        guard let directory = try invocation.value("state", as: String.self) else { throw invocation.usageError("missing --state DIR") }
        var configuration = ControlCore.Configuration()
        let heartbeat = try invocation.value("heartbeat", as: Int.self) ?? 10
        let timeout = try invocation.value("member-timeout", as: Int.self) ?? 30
        guard heartbeat > 0, timeout > heartbeat else { throw invocation.usageError("need 0 < --heartbeat < --member-timeout") }
        configuration.heartbeat = .seconds(heartbeat)
        configuration.memberTimeout = .seconds(timeout)
        let rate = try invocation.value("rate-limit", as: Int.self) ?? 50
        guard rate > 0 else { throw invocation.usageError("--rate-limit must be positive") }
        configuration.messagesPerSecond = Double(rate)
        configuration.messageBurst = Double(2 * rate)
        let relays = try invocation.values("relay", as: Endpoint.self)
        var relayKey: [UInt8]?
        if let path = try invocation.value("relay-secret-file", as: String.self) {
            var secret = try SecretFile.read(path)
            relayKey = Keys.relayKey(secret: secret)
            Crypto.wipe(&secret)
        } else if !relays.isEmpty {
            throw invocation.usageError("--relay needs --relay-secret-file")
        }

        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw SecretFile.Problem(description: "cannot create state directory \(directory): \(String(cString: strerror(errno)))")
        }
        let store = StateStore(directory: directory)
        let core = ControlCore(configuration: configuration, relays: relays, relayKey: relayKey)
        core.restore(try store.load())
        for spec in try invocation.values("party", as: String.self) {
            guard let equals = spec.firstIndex(of: "="), equals != spec.startIndex else {
                throw invocation.usageError("invalid --party '\(spec)' (expected NAME=FILE)")
            }
            // The state file keeps a party's name in at most 255 bytes.
            guard spec[..<equals].utf8.count <= 255 else { throw invocation.usageError("--party NAME is longer than 255 bytes") }
            var secret = try SecretFile.read(String(spec[spec.index(after: equals)...]))
            guard core.addParty(name: String(spec[..<equals]), secret: secret) else { throw invocation.usageError("too many parties") }
            Crypto.wipe(&secret)
        }
        let loop = try EventLoop()
        let server = try ControlServer(listen: listen, alternate: alternate, core: core, store: store, loop: loop)
        if core.dirty { server.save() }
        let logger = Logger(label: "lanrage.control")
        try loop.handleSignals { signal in
            if signal == SIGHUP { logger.info("counters", metadata: server.summary) } else { loop.stop() }
        }
        logger.info("listening", metadata: [
            "endpoints": "\(server.sockets.map(\.local.description).joined(separator: ","))",
            "parties": "\(core.parties.count)",
            "members": "\(core.parties.values.reduce(0) { $0 + $1.members.count })",
            "relays": "\(relays.count)", "state": "\(store.path)",
        ])
        try loop.run()
        server.save()
        logger.info("counters", metadata: server.summary)
        return .success
    }
}
