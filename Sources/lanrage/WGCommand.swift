import Commands
import Output
import Net
import WireGuard
import CLinux

/// `lanrage wg show|apply|delete`: WireGuard through the kernel module (netlink) or wireguard-go (UAPI).
enum WGCommand {
    static let backendOption = Option.value(
        "backend", "BACKEND",
        help: "netlink (kernel module) or uapi (wireguard-go); default: netlink when the kernel has WireGuard, else uapi.")

    static let command = Command(
        "wg",
        abstract: "Configure WireGuard and read it back (kernel module over netlink, or wireguard-go over UAPI).",
        subcommands: [show, apply, delete]
    )

    static let show = Command(
        "show",
        abstract: "Show WireGuard interfaces: keys, peers, endpoints, latest handshakes, transfer (private keys hidden).",
        options: [backendOption, .flag("json", help: "Print JSON instead of text.")],
        arguments: [Argument("IFNAME", help: "The interface to show; all when left out.", optional: true)]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let single = try invocation.argument("IFNAME", as: String.self)
        let forced = try invocation.value("backend", as: BackendKind.self)
        let (backend, devices) = try failing { () throws(WireGuardError) -> (any WireGuardBackend, [Device]) in
            let backend = try Backends.select(forced, interface: single)
            var devices: [Device] = []
            let names = if let single { [single] } else { try backend.interfaceNames() }
            for name in names { devices.append(try backend.device(named: name)) }
            return (backend, devices)
        }
        let now = Int64(time(nil))
        if invocation.flag("json") {
            let document: JSON = single != nil && devices.count == 1
                ? json(devices[0], backend: backend.kind, now: now)
                : .array(devices.map { json($0, backend: backend.kind, now: now) })
            StandardStreams.out(document.rendered(pretty: true) + "\n")
        } else {
            StandardStreams.out(devices.map { DeviceReport.text($0, now: now) }.joined(separator: "\n"))
        }
        return .success
    }

    static let apply = Command(
        "apply",
        abstract: "Apply a wg-quick style file to an interface (created if missing), idempotently.",
        discussion: """
            FILE has an [Interface] section (PrivateKey, ListenPort, FwMark, Address) and [Peer] sections \
            (PublicKey, PresharedKey, Endpoint, AllowedIPs, PersistentKeepalive). The whole file is checked \
            before anything changes. Peers on the interface but not in FILE are removed; applying the same \
            file twice changes nothing. Addresses are set to exactly those listed, allowed IPs are routed \
            to the interface (except /0), and the link is brought up.
            """,
        options: [backendOption, .flag("dry-run", help: "Print what would change without changing it.")],
        arguments: [Argument("IFNAME", help: "The WireGuard interface."), Argument("FILE", help: "The configuration file.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let name = try invocation.argument("IFNAME", as: String.self)!
        let path = try invocation.argument("FILE", as: String.self)!
        let forced = try invocation.value("backend", as: BackendKind.self)
        let dryRun = invocation.flag("dry-run")
        try failing { () throws(WireGuardError) in try InterfaceName.validate(name) }
        var text = try failing { () throws(FileError) in try readFile(path) }
        defer { var bytes = Array(text.utf8); Secrets.wipe(&bytes); text = "" }
        let configuration = try failing { () throws(WireGuardError) in try Configuration(parsing: text, file: path) }
        for key in configuration.ignored {
            StandardStreams.error("lanrage wg apply: \(path): '\(key)' is a wg-quick setting and is ignored\n")
        }
        let backend = try failing { () throws(WireGuardError) in try Backends.select(forced, interface: name) }
        if dryRun {
            let current = try failing { () throws(WireGuardError) in if_nametoindex(name) != 0 ? try backend.device(named: name) : nil }
            let plan = ApplyPlan(configuration: configuration, current: current)
            StandardStreams.out(summary(name, plan: plan, backend: backend.kind, result: nil))
            return .success
        }
        let result = try failing { () throws(WireGuardError) in try Applier.apply(configuration, to: name, using: backend) }
        StandardStreams.out(summary(name, plan: result.plan, backend: result.backend, result: result))
        // One structured line per apply; never a private or preshared key.
        Logger(label: "lanrage.wg").info("wireguard applied", metadata: [
            "interface": "\(name)",
            "backend": "\(result.backend.rawValue)",
            "public_key": "\(configuration.privateKey.publicKey.base64)",
            "created": "\(result.plan.createInterface)",
            "peers_added": "\(result.plan.addedPeers.count)",
            "peers_updated": "\(result.plan.updatedPeers.count)",
            "peers_removed": "\(result.plan.removedPeers.count)",
            "addresses_added": "\(result.addedAddresses.count)",
            "addresses_removed": "\(result.removedAddresses.count)",
            "routes_added": "\(result.routes.count)",
        ])
        return .success
    }

    static let delete = Command(
        "delete",
        abstract: "Delete a WireGuard interface (wireguard-go exits when its interface goes).",
        options: [backendOption],
        arguments: [Argument("IFNAME", help: "The interface to delete.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let name = try invocation.argument("IFNAME", as: String.self)!
        let forced = try invocation.value("backend", as: BackendKind.self)
        try failing { () throws(WireGuardError) in
            let backend = try Backends.select(forced, interface: name)
            try Privileges.requireNetAdmin("delete interface \(name)")
            _ = try backend.device(named: name)  // only WireGuard interfaces
            try backend.deleteInterface(named: name)
        }
        StandardStreams.out("\(name): deleted\n")
        return .success
    }

    private static func summary(_ name: String, plan: ApplyPlan, backend: BackendKind, result: ApplyResult?) -> String {
        var parts: [String] = []
        if plan.createInterface { parts.append("created") }
        if plan.change.privateKey != nil { parts.append("private key set") }
        if let port = plan.change.listenPort { parts.append("listen port \(port)") }
        if !plan.addedPeers.isEmpty { parts.append("\(plan.addedPeers.count) peer(s) added") }
        if !plan.updatedPeers.isEmpty { parts.append("\(plan.updatedPeers.count) peer(s) updated") }
        if !plan.removedPeers.isEmpty { parts.append("\(plan.removedPeers.count) peer(s) removed") }
        if let result {
            if !result.addedAddresses.isEmpty { parts.append("address(es) \(result.addedAddresses.map { $0.description }.joined(separator: ", ")) added") }
            if !result.removedAddresses.isEmpty { parts.append("address(es) \(result.removedAddresses.map { $0.description }.joined(separator: ", ")) removed") }
            if !result.routes.isEmpty { parts.append("route(s) \(result.routes.map { $0.description }.joined(separator: ", ")) added") }
            if result.broughtUp { parts.append("up") }
        }
        let verb = result == nil ? "would change" : "changed"
        if parts.isEmpty { return "\(name) (\(backend.rawValue)): unchanged\n" }
        return "\(name) (\(backend.rawValue)): \(verb): \(parts.joined(separator: "; "))\n"
    }

    private static func json(_ device: Device, backend: BackendKind, now: Int64) -> JSON {
        var members: [(String, JSON)] = [
            ("interface", .string(device.name)),
            ("backend", .string(backend.rawValue)),
            ("public_key", device.publicKey.map { .string($0.base64) } ?? .null),
            ("private_key", device.privateKey == nil ? .null : .string("(hidden)")),
            ("listen_port", .int(Int64(device.listenPort))),
            ("fwmark", .int(Int64(device.fwmark))),
        ]
        members.append(("peers", .array(device.peers.map { peer in
            .object([
                ("public_key", .string(peer.publicKey.base64)),
                ("preshared_key", peer.presharedKey == nil ? .null : .string("(hidden)")),
                ("endpoint", peer.endpoint.map { .string($0.description) } ?? .null),
                ("allowed_ips", .array(peer.allowedIPs.map { .string($0.description) })),
                ("latest_handshake", peer.lastHandshake.map { .int($0.seconds) } ?? .null),
                ("latest_handshake_age_seconds", peer.lastHandshake.map { .int(now - $0.seconds) } ?? .null),
                ("rx_bytes", .int(Int64(clamping: peer.rxBytes))),
                ("tx_bytes", .int(Int64(clamping: peer.txBytes))),
                ("persistent_keepalive", .int(Int64(peer.persistentKeepalive))),
            ])
        })))
        return .object(members)
    }

    /// Reads a whole file (at most 16 MiB).
    static func readFile(_ path: String) throws(FileError) -> String {
        let fd = lanrage_open(path, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw FileError(message: SystemError("open", path).description) }
        defer { close(fd) }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while data.count < 16 << 20 {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0, lanrage_errno() == EINTR { continue }
            if count < 0 { throw FileError(message: SystemError("read", path).description) }
            if count == 0 { break }
            data += buffer[0..<count]
        }
        defer { Secrets.wipe(&data); Secrets.wipe(&buffer) }
        return String(decoding: data, as: UTF8.self)
    }

    struct FileError: Error, ExitCodeProviding, CustomStringConvertible {
        var message: String
        var exitCode: ExitCode { .noInput }
        var description: String { message }
    }
}

extension BackendKind: ArgumentValue {}
