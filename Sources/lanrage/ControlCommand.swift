import CLinux
import Agent
import Commands
import Control
import EventLoop
import Output
import Net
import Rendezvous
import WireGuard
import Time

/// `lanrage control --listen IP:PORT [--listen [IPv6]:PORT] --key FILE --party NAME=AUTHORITY … --state DIR [--relay IP:PORT …]`
enum ControlCommand {
    static let command = Command(
        "control",
        abstract: "Run the rendezvous server: parties, registry with pushes, punch coordination, relay offers, STUN on the same port.",
        discussion: """
            Each party is given by its name and its authority's public key (--party NAME=KEY, from 'lanrage ca \
            pubkey'); only members with a certificate that authority signed are admitted. The server has a key of \
            its own (--key, from 'lanrage genkey'), whose public key every agent pins ([Party] ControlKey): every \
            message both ways is authenticated under a key only the member and the server can derive, and carries \
            a timestamp and nonce; anything else is dropped and counted. Parties and members are kept in \
            DIR/control.state; a restarted server restores them and members re-register by themselves. Members \
            listed in --revoked are removed at once and refused; SIGHUP reads that file again and logs the counters.
            """,
        options: [
            .repeated("listen", "IP:PORT", help: "Address and port for control and STUN; once per family for IPv4 and IPv6."),
            .value("alternate", "IP:PORT", help: "Alternate address and port for RFC 5780 STUN (OTHER-ADDRESS), beside the --listen of its family."),
            .value("key", "FILE", help: "The server's private key (mode 0600, from 'lanrage genkey')."),
            .value("state", "DIR", help: "Directory holding the persistent state (created 0700 if missing)."),
            .repeated("party", "NAME=KEY", help: "Serve the party NAME, whose authority's public key is KEY."),
            .value("revoked", "FILE", help: "Member public keys the administrator removed, one per line (read again on SIGHUP)."),
            .repeated("relay", "HOST:PORT", help: "A relay's service endpoint (the first port of its range), by address or host name."),
            .value("relay-secret-file", "FILE", help: "Secret shared with the relays, for their tokens."),
            .value("heartbeat", "SECONDS", help: "Heartbeat interval given to members.", default: "10"),
            .value("member-timeout", "SECONDS", help: "A member silent this long is gone.", default: "30"),
            .value("forget-after", "SECONDS", help: "A member offline this long is removed from the registry.", default: "604800"),
            .value("rate-limit", "N", help: "Messages per second accepted from one member (burst 2N).", default: "50"),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let listen = try invocation.values("listen", as: Endpoint.self)
        guard let first = listen.first else { throw invocation.usageError("missing --listen IP:PORT") }
        guard listen.count == 1 || (listen.count == 2 && listen[1].address.family != first.address.family) else {
            throw invocation.usageError("--listen: at most one IPv4 and one IPv6 endpoint")
        }
        let alternate = try invocation.value("alternate", as: Endpoint.self)
        if let alternate {
            guard let primary = listen.first(where: { $0.address.family == alternate.address.family }) else {
                throw invocation.usageError("--alternate needs a --listen of its address family")
            }
            if alternate.address == primary.address || alternate.port == primary.port {
                throw invocation.usageError("--alternate must differ from --listen in both IP and port")
            }
        }
        guard let directory = try invocation.value("state", as: String.self) else { throw invocation.usageError("missing --state DIR") }
        guard let keyPath = try invocation.value("key", as: String.self) else {
            throw invocation.usageError("missing --key FILE (the server's private key: lanrage genkey -o FILE)")
        }
        var configuration = ControlCore.Configuration()
        let heartbeat = try invocation.value("heartbeat", as: Int.self) ?? 10
        let timeout = try invocation.value("member-timeout", as: Int.self) ?? 30
        guard heartbeat > 0, timeout > heartbeat else { throw invocation.usageError("need 0 < --heartbeat < --member-timeout") }
        configuration.heartbeat = .seconds(heartbeat)
        configuration.memberTimeout = .seconds(timeout)
        let forget = try invocation.value("forget-after", as: Int.self) ?? 604_800
        guard forget >= timeout else { throw invocation.usageError("--forget-after must be at least --member-timeout") }
        configuration.forgetAfter = .seconds(forget)
        let rate = try invocation.value("rate-limit", as: Int.self) ?? 50
        guard rate > 0, rate <= 1_000_000 else { throw invocation.usageError("--rate-limit must be from 1 to 1000000") }
        configuration.messagesPerSecond = Double(rate)
        configuration.messageBurst = Double(2 * rate)
        var parties: [(String, [UInt8])] = []
        for spec in try invocation.values("party", as: String.self) {
            guard let equals = spec.firstIndex(of: "="), equals != spec.startIndex else {
                throw invocation.usageError("invalid --party '\(spec)' (expected NAME=KEY, KEY from 'lanrage ca pubkey')")
            }
            let name = String(spec[..<equals]), keyText = String(spec[spec.index(after: equals)...])
            guard name.utf8.count <= 64 else { throw invocation.usageError("party name '\(name)' is longer than 64 bytes") }
            guard let authority = Crypto.bytes(base64: keyText, limit: 32), authority.count == 32 else {
                throw invocation.usageError("--party \(name): '\(keyText)' is not an authority public key (44 characters of base64, from 'lanrage ca pubkey')")
            }
            parties.append((name, authority))
        }
        let relays = try invocation.values("relay", as: ServerAddress.self)
        var relayKey: [UInt8]?
        if let path = try invocation.value("relay-secret-file", as: String.self) {
            var secret = try failing { () throws(SecretFile.Problem) in try SecretFile.read(path) }
            relayKey = Keys.relayKey(secret: secret)
            Crypto.wipe(&secret)
        } else if !relays.isEmpty {
            throw invocation.usageError("--relay needs --relay-secret-file")
        }
        let revokedPath = try invocation.value("revoked", as: String.self)
        var keyText = try failing { () throws(SecretFile.Problem) in try SecretFile.read(keyPath) }
        defer { Crypto.wipe(&keyText) }
        guard var privateKey = Key(base64: String(decoding: keyText, as: UTF8.self)) else {
            throw CommandError("\(keyPath) does not hold a key (44 characters of base64, as 'lanrage genkey' prints)", exitCode: .dataError)
        }
        defer { privateKey.wipe() }

        if mkdir(directory, 0o700) != 0 && lanrage_errno() != EEXIST {
            throw CommandError(SystemError("mkdir", "the state directory \(directory)"))
        }
        let store = StateStore(directory: directory)
        let clock = SystemClock()
        let core = ControlCore(configuration: configuration, privateKey: privateKey.bytes, relays: relays.compactMap { $0.endpoint },
                               relayKey: relayKey, now: clock.now)
        core.restore(try failing(.failure) { () throws(StateStore.Failure) in try store.load() }, wall: clock.unixMillis)
        for (name, authority) in parties {
            guard core.addParty(name: name, authority: authority, wall: clock.unixMillis) else { throw invocation.usageError("too many parties") }
        }
        let logger = Logger(label: "lanrage.control")
        if let revokedPath { _ = core.revoke(try failing { () throws(SecretFile.Problem) in try RevokedFile.read(revokedPath) }, wall: clock.unixMillis) }
        let loop = try failing { () throws(SystemError) in try EventLoop(clock: clock) }
        let server = try failing { () throws(SystemError) in
            try ControlServer(listen: listen, alternate: alternate, core: core, store: store, loop: loop, clock: clock)
        }
        if core.dirty { server.save() }
        // Relays given by name join the offers once their names resolve.
        let relayNames = relays.contains { $0.name != nil } ? RelayNames(relays, core: core, loop: loop, clock: clock, logger: Logger(label: "lanrage.names")) : nil
        try failing { () throws(SystemError) in try loop.handleSignals { signal in
            guard signal == SIGHUP else { return loop.stop() }
            if let revokedPath {
                do throws(SecretFile.Problem) {
                    server.send(core.revoke(try RevokedFile.read(revokedPath), wall: clock.unixMillis))
                } catch {
                    logger.error("revoked members not read again, the list stays", metadata: ["error": "\(error)"])
                }
            }
            logger.info("counters", metadata: server.summary)
        } }
        logger.info("listening", metadata: [
            "endpoints": "\(server.sockets.map { $0.local.description }.joined(separator: ","))",
            "key": "\(Crypto.base64(core.serverKey.bytes))",
            "parties": "\(core.parties.count)",
            "members": "\(core.parties.values.reduce(0) { $0 + $1.members.count })",
            "relays": "\(relays.count)", "state": "\(store.path)",
        ])
        try failing { () throws(SystemError) in try loop.run() }
        withExtendedLifetime(relayNames) {}
        server.save()
        logger.info("counters", metadata: server.summary)
        return .success
    }
}

/// The administrator's list of removed members: WireGuard public keys in base64, one per line
/// (`#` starts a comment).
enum RevokedFile {
    static func read(_ path: String) throws(SecretFile.Problem) -> Set<MemberKey> {
        let fd = lanrage_open(path, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw SecretFile.Problem(description: "cannot read \(path): \(String(cString: strerror(lanrage_errno())))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while bytes.count <= 1 << 22 {
            let count = CLinux.read(fd, &chunk, chunk.count)
            if count < 0, lanrage_errno() == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        guard bytes.count <= 1 << 22 else { throw SecretFile.Problem(description: "\(path) is larger than 4 MiB") }
        var keys: Set<MemberKey> = []
        for (number, line) in bytes.split(separator: 10, omittingEmptySubsequences: false).enumerated() {
            let text = String(decoding: line.prefix { $0 != UInt8(ascii: "#") }, as: UTF8.self).withoutASCIISpaces
            guard !text.isEmpty else { continue }
            guard let key = Key(base64: text), let member = MemberKey(key.bytes) else {
                throw SecretFile.Problem(description: "\(path):\(number + 1): not a WireGuard public key (44 characters of base64)")
            }
            keys.insert(member)
        }
        return keys
    }
}
