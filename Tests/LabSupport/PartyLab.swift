import Foundation
import Net

/// A party in the lab: `lanrage control` on the STUN host (control and STUN on 192.0.2.1:3478 and [2001:db8::1]:3478,
/// alternate 192.0.2.2:3479), `lanrage relay`s, and `lanrage agent`s in site clients, each with its
/// own configuration, key, certificate, WireGuard interface (wireguard-go) and status socket. The
/// party's authority and the server's key are made with the CLI, as an administrator would.
public final class PartyLab {
    public let lab: Lab
    public let control = Endpoint("192.0.2.1:3478")!
    /// The control server's IPv6 endpoint (it listens on both families).
    public let control6 = Endpoint(.v6(Lab.stunPrimary6), 3478)
    /// The party authority's key (`lanrage ca genkey`) and public key.
    public let authorityKey: URL
    public let authority: String
    /// The control server's key (`lanrage genkey`) and public key.
    public let serverKey: URL
    public let serverPublicKey: String
    public let relaySecret: URL
    public private(set) var relays: [Endpoint] = []
    public private(set) var agents: [AgentHandle] = []
    public private(set) var controlProcess: Process?
    /// Every agent's interface: its wireguard-go outlives an agent killed with SIGKILL.
    private var interfaces: [String] = []

    public init(_ lab: Lab) throws {
        self.lab = lab
        authorityKey = lab.directory.appendingPathComponent("authority.key")
        serverKey = lab.directory.appendingPathComponent("server.key")
        relaySecret = lab.directory.appendingPathComponent("relay.secret")
        try LabSupport.run([Products.lanrage, "ca", "genkey", "-o", authorityKey.path])
        authority = try LabSupport.run(["sh", "-c", "\(Products.lanrage) ca pubkey < \(authorityKey.path)"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try LabSupport.run([Products.lanrage, "genkey", "-o", serverKey.path])
        serverPublicKey = try LabSupport.run(["sh", "-c", "\(Products.lanrage) pubkey < \(serverKey.path)"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }.map { String(format: "%02x", $0) }.joined().utf8).write(to: relaySecret)
        chmod(relaySecret.path, 0o600)
        // Strongly held: a test's last use of its PartyLab may come before its lab's shutdown. The
        // lab drops its hooks when it shuts down, which ends the cycle.
        lab.atShutdown { self.stopDataPlanes() }
    }

    /// Stops the wireguard-go of every agent's interface still running (agents stopped cleanly
    /// took theirs down): SIGTERM, then SIGKILL after a second. Only processes serving this lab's
    /// interfaces, found by their exact command line.
    private func stopDataPlanes() {
        for interface in interfaces {
            guard let pid = Lab.wireguardGo(serving: interface) else { continue }
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(1)
            while kill(pid, 0) == 0, Date() < deadline { usleep(20_000) }
            if Lab.wireguardGo(serving: interface) == pid { kill(pid, SIGKILL) }
        }
    }

    /// Starts a relay in `namespace` listening on `address` (and on `ipv6`, given to the control
    /// server as a second service endpoint), ports 4000–4199. Call before `startControl`.
    @discardableResult
    public func startRelay(in namespace: Namespace, address: IPv4Address, ipv6: IPv6Address? = nil, log: String = "relay.log") throws -> Process {
        let listen = ["--listen", "\(address)"] + (ipv6.map { ["--listen", "\($0)"] } ?? [])
        let process = try lab.spawn(in: namespace, [Products.lanrage, "relay"] + listen + ["--ports", "4000-4199",
                                                   "--secret-file", relaySecret.path, "--log-level", "debug"], log: log)
        let services = [Endpoint(.v4(address), 4000)] + (ipv6.map { [Endpoint(.v6($0), 4000)] } ?? [])
        for service in services { try namespace.waitForUDPListener(service) }
        relays += services
        return process
    }

    /// Starts (or restarts) the control server on the STUN host, state kept in the lab directory.
    /// `authority` replaces the party's (a server that refuses its members), `wrapper` runs before
    /// the command (`faketime` for a server whose clock is off). With `moved` it listens on the
    /// host's second address only (192.0.2.2:3478, no alternate for RFC 5780 STUN): a server whose
    /// address changed. `relayNames` replaces the `--relay` of the relays started (`NAME:PORT`).
    @discardableResult
    public func startControl(heartbeat: Int = 2, memberTimeout: Int = 8, authority: String? = nil, wrapper: [String] = [],
                             moved: Bool = false, relayNames: [String]? = nil) throws -> Process {
        let listen = moved ? Endpoint(.v4(Lab.stunAlternate), control.port) : control
        var arguments = wrapper + [Products.lanrage, "control", "--listen", "\(listen)", "--listen", "\(control6)"]
            + (moved ? [] : ["--alternate", "\(Endpoint(.v4(Lab.stunAlternate), 3479))"]) + ["--key", serverKey.path,
                         "--state", lab.directory.appendingPathComponent("control-state").path,
                         "--party", "lab=\(authority ?? self.authority)", "--heartbeat", "\(heartbeat)", "--member-timeout", "\(memberTimeout)"]
        let relayArguments = relayNames ?? relays.map { "\($0)" }
        for relay in relayArguments { arguments += ["--relay", relay] }
        if !relayArguments.isEmpty { arguments += ["--relay-secret-file", relaySecret.path] }
        let process = try lab.spawn(in: lab.stunHost, arguments, log: "control.log")
        try lab.stunHost.waitForUDPListener(listen)
        controlProcess = process
        return process
    }

    /// Stops the control server with SIGKILL (a crash), waiting until it is gone.
    public func killControl() {
        guard let process = controlProcess else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        controlProcess = nil
    }

    /// Writes a configuration for agent `index` (overlay 100.64.0.index/32) and starts it in `namespace`.
    /// `interface` adds lines to the [Interface] section, `agent` to the [Agent] section (short lab
    /// timings by default); `subnets` are granted by its certificate besides its overlay address;
    /// `control` replaces the control server's IPv4 endpoint (its IPv6 one, or `NAME:PORT`).
    @discardableResult
    public func startAgent(in namespace: Namespace, index: Int, interface: [String] = [], agent extra: [String] = [],
                           subnets: [String] = [], control server: String? = nil) throws -> AgentHandle {
        let handle = try prepareAgent(in: namespace, index: index, interface: interface, agent: extra, subnets: subnets, control: server)
        try launch(handle)
        return handle
    }

    /// Starts the agent `prepareAgent` wrote (its configuration perhaps edited since).
    public func launch(_ handle: AgentHandle) throws {
        handle.process = try lab.spawn(in: handle.namespace, ["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", Products.lanrage, "agent",
                                                              "--config", handle.configuration.path, "--log-level", "debug"],
                                       log: "agent\(handle.index).log")
        agents.append(handle)
    }

    /// The lab's shorter timings, each left out when the agent's own lines set it.
    static let labTimings = ["PersistentKeepalive = 5s", "LivenessPoll = 2s", "UpgradeBase = 10s"]

    /// Writes agent `index`'s key, certificate (`lanrage ca sign`: its overlay address and `subnets`)
    /// and configuration without starting it (`control`: as in ``startAgent``).
    public func prepareAgent(in namespace: Namespace, index: Int, interface: [String] = [], agent extra: [String] = [],
                             subnets: [String] = [], control server: String? = nil) throws -> AgentHandle {
        let tag = lab.prefix.replacingOccurrences(of: "ls", with: "").replacingOccurrences(of: "-", with: "x")
        let handle = AgentHandle(
            namespace: namespace, index: index, interface: "lr\(tag)a\(index)".suffix(15).description,
            directory: lab.directory.appendingPathComponent("agent\(index)"), overlay: IPv4Address(100, 64, 0, UInt8(index)))
        try FileManager.default.createDirectory(at: handle.directory, withIntermediateDirectories: true)
        if !interfaces.contains(handle.interface) { interfaces.append(handle.interface) }
        let key = handle.directory.appendingPathComponent("private.key")
        if !FileManager.default.fileExists(atPath: key.path) {
            try LabSupport.run([Products.lanrage, "genkey"]).write(to: key, atomically: true, encoding: .utf8)
            chmod(key.path, 0o600)
        }
        try certify(handle, addresses: ["\(handle.overlay)/32"], subnets: subnets)
        let configuration = """
            [Interface]
            PrivateKeyFile = \(key.path)
            ListenPort = 51820
            Name = \(handle.interface)
            \(interface.joined(separator: "\n"))

            [Party]
            Control = \(server ?? "\(control)")
            ControlKey = \(serverPublicKey)
            Name = lab
            Authority = \(authority)
            Certificate = \(handle.certificate.path)

            [Agent]
            Backend = uapi
            StatusSocket = \(handle.statusSocket)
            \((Self.labTimings.filter { timing in !extra.contains { $0.hasPrefix(timing.prefix { $0 != " " }) } } + extra).joined(separator: "\n"))

            """
        try configuration.write(to: handle.configuration, atomically: true, encoding: .utf8)
        return handle
    }

    /// Signs (again) the certificate of `handle`'s key with the party's authority (`lanrage ca sign`):
    /// what the administrator grants it.
    public func certify(_ handle: AgentHandle, addresses: [String], subnets: [String] = []) throws {
        let key = handle.directory.appendingPathComponent("private.key")
        let publicKey = try LabSupport.run(["sh", "-c", "\(Products.lanrage) pubkey < \(key.path)"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try LabSupport.run([Products.lanrage, "ca", "sign", "--key", authorityKey.path, "--party", "lab", "--member", publicKey,
                            "--name", "agent\(handle.index)", "-o", handle.certificate.path]
                           + addresses.flatMap { ["--address", $0] } + subnets.flatMap { ["--subnet", $0] })
    }

    /// The agent's log so far (for failure messages).
    public func log(of handle: AgentHandle) -> String {
        (try? String(contentsOf: lab.directory.appendingPathComponent("agent\(handle.index).log"), encoding: .utf8)) ?? ""
    }

    /// With `LANRAGE_KEEP_LOGS` set, copies each agent's log to `/tmp/<name>-agent<index>.log` (and,
    /// with `control`, the control server's to `/tmp/<name>-control.log`), to be read after the run.
    public func keepLogs(of agents: [AgentHandle], as name: String, control: Bool = false) {
        guard ProcessInfo.processInfo.environment["LANRAGE_KEEP_LOGS"] != nil else { return }
        for agent in agents { try? log(of: agent).write(toFile: "/tmp/\(name)-agent\(agent.index).log", atomically: true, encoding: .utf8) }
        if control {
            try? String(contentsOf: lab.directory.appendingPathComponent("control.log"), encoding: .utf8)
                .write(toFile: "/tmp/\(name)-control.log", atomically: true, encoding: .utf8)
        }
    }
}

/// One running agent in the lab.
public final class AgentHandle: @unchecked Sendable {
    public let namespace: Namespace
    public let index: Int
    public let interface: String
    public let directory: URL
    public let overlay: IPv4Address
    public var process: Process?

    init(namespace: Namespace, index: Int, interface: String, directory: URL, overlay: IPv4Address) {
        self.namespace = namespace
        self.index = index
        self.interface = interface
        self.directory = directory
        self.overlay = overlay
    }

    public var configuration: URL { directory.appendingPathComponent("agent.conf") }
    public var certificate: URL { directory.appendingPathComponent("member.cert") }
    public var statusSocket: String { directory.appendingPathComponent("agent.sock").path }

    /// `lanrage status --json`, decoded; `nil` while the agent does not answer.
    public func status() -> [String: Any]? {
        guard let text = try? LabSupport.run([Products.lanrage, "status", "--json", "--socket", statusSocket], allowFailure: true),
              let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return nil }
        return object
    }

    /// The status entry of the peer whose overlay address is `overlay`.
    public func peer(_ overlay: IPv4Address) -> [String: Any]? {
        (status()?["peers"] as? [[String: Any]])?.first { ($0["addresses"] as? [String])?.contains("\(overlay)/32") == true }
    }

    /// Polls (every 100 ms, at most `seconds`) until `condition` holds for the peer at `overlay`.
    @discardableResult
    public func waitForPeer(_ overlay: IPv4Address, within seconds: Double, _ condition: ([String: Any]) -> Bool) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let peer = peer(overlay), condition(peer) { return peer }
            usleep(100_000)
        }
        return nil
    }

    /// Polls (every 100 ms, at most `seconds`) until `condition` holds for the agent's status; the status then.
    public func waitForStatus(within seconds: Double, _ condition: ([String: Any]) -> Bool) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let status = status(), condition(status) { return status }
            usleep(100_000)
        }
        return nil
    }

    /// Polls (every 100 ms, at most `seconds`) until the agent knows its NAT type; the type, or
    /// `nil` while it is still unknown.
    public func waitForNATType(within seconds: Double) -> String? {
        let status = waitForStatus(within: seconds) { (($0["nat"] as? [String: Any])?["type"] as? String ?? "unknown") != "unknown" }
        return (status?["nat"] as? [String: Any])?["type"] as? String
    }

    /// One ping over the overlay to `overlay` from this agent's namespace (1 s timeout).
    public func ping(_ overlay: IPv4Address) -> Bool {
        ((try? namespace.run(["ping", "-c", "1", "-W", "1", "\(overlay)"], allowFailure: true)) ?? "").contains(" 0% packet loss")
    }

    /// Pings every 200 ms until one answer comes or `seconds` pass; the time it took.
    public func pingUntilAnswered(_ overlay: IPv4Address, within seconds: Double) -> Double? {
        let started = Date()
        while Date().timeIntervalSince(started) < seconds {
            if ((try? namespace.run(["ping", "-c", "1", "-W", "0.2", "\(overlay)"], allowFailure: true)) ?? "").contains(" 0% packet loss") {
                return Date().timeIntervalSince(started)
            }
        }
        return nil
    }

    /// Sends `signal` to the agent and waits (bounded) for it to exit.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM, within seconds: Double = 10) -> Bool {
        guard let process, process.isRunning else { return true }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return !process.isRunning
    }
}
