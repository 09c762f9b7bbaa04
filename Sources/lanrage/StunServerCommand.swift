import Agent
import Commands
import Output
import Net
import STUN

/// `lanrage stun-server --listen IP:PORT [--alternate IP:PORT]`
enum StunServerCommand {
    static let command = Command(
        "stun-server",
        abstract: "Answer STUN binding requests (RFC 8489), with RFC 5780 behaviour discovery when given an alternate address.",
        discussion: """
            With --alternate, the server listens on four endpoints (each IP with each port), answers with \
            XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS, and honours CHANGE-REQUEST. Without it, \
            CHANGE-REQUEST is refused with 420. Classic RFC 3489 clients are answered in their dialect.
            """,
        options: [
            .value("listen", "IP:PORT", help: "Primary address and port to listen on."),
            .value("alternate", "IP:PORT", help: "Alternate address and port (another IP and another port) for RFC 5780."),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        guard let listen = try invocation.value("listen", as: Endpoint.self) else {
            throw invocation.usageError("missing --listen IP:PORT")
        }
        let alternate = try invocation.value("alternate", as: Endpoint.self)
        if let alternate {
            guard alternate.address != listen.address, alternate.port != listen.port,
                  alternate.address.family == listen.address.family else {
                throw invocation.usageError("--alternate must differ from --listen in both IP and port, same family")
            }
            guard !isUnspecified(listen.address), !isUnspecified(alternate.address) else {
                throw invocation.usageError("with --alternate, both addresses must be specific IPs (not 0.0.0.0 or ::)")
            }
        }
        let server = try failing { () throws(SystemError) in
            try STUNServer(listen: listen, alternate: alternate, software: "lanrage \(VersionCommand.version)")
        }
        let logger = Logger(label: "lanrage.stun-server")
        logger.info("listening", metadata: [
            "endpoints": "\(server.sockets.map { $0.local.description }.joined(separator: ","))",
            "rfc5780": "\(alternate != nil)",
        ])
        try failing { () throws(SystemError) in try server.serve() }
        return .success
    }

    static func isUnspecified(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let v4): v4.value == 0
        case .v6(let v6): v6.bytes.allSatisfy { $0 == 0 }
        }
    }
}
