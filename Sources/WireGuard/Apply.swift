import Net
import CLinux

/// What applying a configuration to a device must change: computed from what the device reports,
/// so re-applying the same file changes nothing and a peer missing from the file is removed.
public struct ApplyPlan: Sendable, Equatable {
    public var createInterface: Bool
    public var change: DeviceChange
    public var addedPeers: [Key]
    public var updatedPeers: [Key]
    public var removedPeers: [Key]

    /// The plan for `configuration` against `current` (`nil`: the interface does not exist yet).
    public init(configuration: Configuration, current: Device?) {
        createInterface = current == nil
        let device = current ?? Device(name: "")
        var change = DeviceChange()
        if device.privateKey != configuration.privateKey { change.privateKey = configuration.privateKey }
        if let port = configuration.listenPort, port != device.listenPort { change.listenPort = port }
        if let mark = configuration.fwmark, mark != device.fwmark { change.fwmark = mark }
        addedPeers = []
        updatedPeers = []
        removedPeers = []
        // Indexed by key: a thousand peers must not cost a million constant-time comparisons.
        // (One dictionary type, key → index, serves every lookup: fewer specialisations in the binary.)
        var existingIndex: [Key: Int] = [:]
        for (index, peer) in device.peers.enumerated() { existingIndex[peer.publicKey] = index }
        var wantedIndex: [Key: Int] = [:]
        for (index, peer) in configuration.peers.enumerated() { wantedIndex[peer.publicKey] = index }
        for wanted in configuration.peers {
            guard let existing = existingIndex[wanted.publicKey].map({ device.peers[$0] }) else {
                change.peers.append(PeerChange(
                    publicKey: wanted.publicKey, presharedKey: wanted.presharedKey, endpoint: wanted.endpoint,
                    persistentKeepalive: wanted.persistentKeepalive == 0 ? nil : wanted.persistentKeepalive,
                    replaceAllowedIPs: true, allowedIPs: wanted.allowedIPs))
                addedPeers.append(wanted.publicKey)
                continue
            }
            var peerChange = PeerChange(publicKey: wanted.publicKey, updateOnly: true)
            var changed = false
            if existing.presharedKey != wanted.presharedKey {
                peerChange.presharedKey = wanted.presharedKey ?? Key(bytes: [UInt8](repeating: 0, count: Key.byteCount))!
                changed = true
            }
            // An endpoint the file leaves out is the one WireGuard learned (roaming): keep it.
            if let endpoint = wanted.endpoint, endpoint != existing.endpoint {
                peerChange.endpoint = endpoint
                changed = true
            }
            if existing.persistentKeepalive != wanted.persistentKeepalive {
                peerChange.persistentKeepalive = wanted.persistentKeepalive
                changed = true
            }
            if existing.allowedIPs.map({ $0.network.description }).sorted() != wanted.allowedIPs.map({ $0.network.description }).sorted() {
                peerChange.replaceAllowedIPs = true
                peerChange.allowedIPs = wanted.allowedIPs
                changed = true
            }
            if changed {
                change.peers.append(peerChange)
                updatedPeers.append(wanted.publicKey)
            }
        }
        for existing in device.peers where wantedIndex[existing.publicKey] == nil {
            change.peers.append(PeerChange(publicKey: existing.publicKey, remove: true))
            removedPeers.append(existing.publicKey)
        }
        self.change = change
    }
}

/// The outcome of `apply`, for the command to print.
public struct ApplyResult: Sendable {
    public var backend: BackendKind
    public var plan: ApplyPlan
    public var addedAddresses: [IPPrefix]
    public var removedAddresses: [IPPrefix]
    public var routes: [IPPrefix]
    public var broughtUp: Bool

    /// Whether anything was changed at all.
    public var changedAnything: Bool {
        plan.createInterface || !plan.change.isEmpty || !addedAddresses.isEmpty || !removedAddresses.isEmpty || broughtUp
    }
}

/// Fails when another socket holds UDP `port` (IPv4 or IPv6), before anything is changed: wireguard-go
/// drops its current port when a new one cannot be bound, which would cut the tunnel.
public func requireFreePort(_ port: UInt16, for name: String) throws(WireGuardError) {
    for text in ["[::]:\(port)", "0.0.0.0:\(port)"] {
        do {
            _ = try UDPSocket(binding: Endpoint(text)!)
        } catch where error.errno == EADDRINUSE {
            throw WireGuardError(.failed, "cannot give \(name) ListenPort \(port): another process holds UDP port \(port); nothing was changed (choose another ListenPort)")
        } catch {
            continue  // no IPv6 here, or another reason that binding will report itself
        }
    }
}

/// Applying a configuration through a backend: checked first, then the interface created if needed,
/// keys, port and peers set in one change, then addresses, routes and link state.
public enum Applier {
    public static func apply(_ configuration: Configuration, to name: String, using backend: any WireGuardBackend) throws(WireGuardError) -> ApplyResult {
        try InterfaceName.validate(name)
        try Privileges.requireNetAdmin("configure WireGuard interface \(name)")
        let exists = if_nametoindex(name) != 0
        var current: Device?
        if exists {
            do {
                current = try backend.device(named: name)
            } catch where error.kind == .notFound {
                throw WireGuardError(.exists, "interface \(name) exists but is not a \(backend.kind == .netlink ? "kernel" : "userspace") WireGuard interface; nothing was changed (choose another name or delete it with 'ip link del \(name)')")
            }
        }
        let plan = ApplyPlan(configuration: configuration, current: current)
        if plan.createInterface, let uapi = backend as? UAPIBackend, UAPIBackend.findInPath(uapi.userspaceProgram) == nil {
            throw WireGuardError(.unavailable, "no WireGuard kernel module and '\(uapi.userspaceProgram)' is not installed (apt-get install wireguard-go); nothing was changed")
        }
        if let port = plan.change.listenPort, port != 0 { try requireFreePort(port, for: name) }
        if plan.createInterface { try backend.createInterface(named: name) }
        var added: [IPPrefix] = [], removed: [IPPrefix] = [], routes: [IPPrefix] = []
        var broughtUp = false
        do throws(WireGuardError) {
            if !plan.change.isEmpty { try backend.configure(name, plan.change) }
            (added, removed) = try RouteNetlink.setAddresses(name, configuration.addresses)
            if try !RouteNetlink.isUp(name) {
                try RouteNetlink.setUp(name, true)
                broughtUp = true
            }
            // Route every allowed IP not already covered by an address's own prefix route. Default
            // routes (/0) need wg-quick's policy routing and are left to the operator.
            let present = try RouteNetlink.routes(name)
            for peer in configuration.peers {
                for prefix in peer.allowedIPs where prefix.length > 0 && !present.contains(where: { $0.contains(prefix) }) {
                    try RouteNetlink.addRoute(name, prefix)
                    routes.append(prefix.network)
                }
            }
        } catch {
            // A new interface that could not be configured is removed again: no half-applied state.
            if plan.createInterface { try? backend.deleteInterface(named: name) }
            // wireguard-go closes its old socket before binding a new port: put the old one back.
            if let current, plan.change.listenPort != nil {
                try? backend.configure(name, DeviceChange(listenPort: current.listenPort))
            }
            throw error
        }
        return ApplyResult(backend: backend.kind, plan: plan, addedAddresses: added, removedAddresses: removed, routes: routes, broughtUp: broughtUp)
    }
}
