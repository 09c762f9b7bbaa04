import DNS
import EventLoop
import Net
import Output
import Peer
import Rendezvous
import WireGuard

/// The peers' WireGuard changes, made as one device change per round of the loop, and their
/// routes and allowed IPs, as `RoutePolicy` decides them.
extension Agent {
    /// The discard port (RFC 863): a probe's datagram asks nothing of the peer's host.
    static let probePort: UInt16 = 9

    /// Sends one datagram through the tunnel to the peer's overlay address (its first allowed
    /// address of a whole prefix, /32 or /128), from a socket of its own, closed at once.
    func probe(_ link: AgentLink) {
        guard let host = link.io.allowedIPs.first(where: { prefix in
            if case .v4 = prefix.address { prefix.length == 32 } else { prefix.length == 128 }
        })?.address,
              let socket = try? UDPSocket(binding: Endpoint(.unspecified(host.family), 0)) else { return }
        _ = try? socket.send([0], to: Endpoint(host, Self.probePort))
    }

    /// What the connection's decisions need of a WireGuard peer as read.
    static func reading(_ peer: WireGuard.Peer) -> WireGuardReading {
        WireGuardReading(endpoint: peer.endpoint, lastHandshake: peer.lastHandshake.map { $0.seconds * 1000 + $0.nanoseconds / 1_000_000 },
                         received: peer.rxBytes)
    }

    /// Queues a change of a WireGuard peer; `applyPeerChanges` makes the round's changes at once. A
    /// device read before it is out of date.
    func configurePeer(_ change: PeerChange) {
        pendingPeerChanges.append(change)
        device = nil
    }

    /// Applies the queued peer changes as one device change, in order; when that fails, one by one,
    /// so that one bad change does not hold back the others.
    func applyPeerChanges() {
        guard !pendingPeerChanges.isEmpty else { return }
        let changes = pendingPeerChanges
        pendingPeerChanges = []
        device = nil
        do { try backend.configure(configuration.interfaceName, DeviceChange(peers: changes)) } catch {
            for change in changes {
                do { try backend.setPeer(configuration.interfaceName, change) } catch {
                    logger.error("configuring WireGuard failed", metadata: ["peer": "\(change.publicKey.base64)", "error": "\(error)"])
                }
            }
        }
    }

    // MARK: Routes

    /// The member's prefixes WireGuard may take as the peer's allowed IPs: those `installRoutes`
    /// accepted last (it runs before every change of them).
    func allowedIPs(_ record: MemberRecord) -> [IPPrefix] {
        peers.link(record.key)?.io.allowedIPs ?? []
    }

    /// Decides the member's prefixes with `RoutePolicy` over one read of the kernel's routes, keeps
    /// the accepted ones as the peer's allowed IPs (see `allowedIPs`), and makes the peer's routes
    /// through the interface the accepted ones: adds those missing (never replacing a route; one
    /// through the interface already, left by an earlier run, is used as it is), removes only those
    /// it added. Each refused prefix is logged once, with its reason. When the kernel's routes
    /// cannot be read, everything stays as it was. Returns whether the allowed IPs changed.
    @discardableResult
    func installRoutes(_ id: MachineID) -> Bool {
        guard let link = links[id] else { return false }
        let name = configuration.interfaceName
        let kernel: [KernelRoute]
        do { kernel = try RouteNetlink.kernelRoutes() } catch {
            logger.error("could not read the kernel's routes: the peer's allowed IPs and routes stay as they were",
                         metadata: ["peer": "\(link.record.key)", "error": "\(error)"])
            return false
        }
        let decision = routePolicy(for: id, kernel).decide(link.record.addresses)
        for (index, prefix) in link.record.addresses.enumerated() where link.record.addresses.firstIndex(of: prefix) == index {
            guard let reason = decision.refused[prefix], reason != link.io.refused[prefix] else { continue }
            logger.warning("prefix refused", metadata: ["peer": "\(link.record.key)", "prefix": "\(prefix)", "reason": "\(reason)"])
        }
        let present = kernel.filter { $0.interfaceName == name && $0.table == KernelRoute.mainTable }.map { $0.prefix }
        var routes: [IPPrefix] = []
        for route in link.io.routes {
            if decision.routes.contains(route) {
                if present.contains(route) { routes.append(route) }  // else deleted by someone else: added again below
                continue
            }
            do { try backend.removeRoute(name, route) } catch {
                guard error.kind != .notFound else { continue }  // deleted by someone else: not the agent's any more
                logger.warning("could not remove a route", metadata: ["peer": "\(link.record.key)", "route": "\(route)", "error": "\(error)"])
                routes.append(route)
            }
        }
        for route in decision.routes where !routes.contains(route) && !present.contains(route) {
            do {
                try backend.addRoute(name, route)
                routes.append(route)
            } catch {
                logger.warning("could not add a route", metadata: ["peer": "\(link.record.key)", "route": "\(route)", "error": "\(error)"])
            }
        }
        peers.update(id) {
            $0.routes = routes
            $0.refused = decision.refused
            $0.allowedIPs = decision.allowedIPs
        }
        return decision.allowedIPs != link.io.allowedIPs
    }

    /// `installRoutes` for each of `ids` in turn, and WireGuard told the allowed IPs that changed.
    func reinstallRoutes(_ ids: [MachineID]) {
        for id in ids where installRoutes(id) {
            guard let link = links[id] else { continue }
            configurePeer(PeerChange(publicKey: link.io.publicKey, updateOnly: true, replaceAllowedIPs: true, allowedIPs: link.io.allowedIPs))
        }
    }

    /// The peers with a refused prefix but `id`, in the order they came: a prefix `id` held may be
    /// free now.
    func peersRefused(besides id: MachineID) -> [MachineID] {
        links.filter { $0.key != id && !$0.value.io.refused.isEmpty }.keys.sorted()
    }

    /// The peer is gone: removes the routes the agent added for it, and gives what it held to the
    /// peers that were refused it.
    func releasePrefixes(_ id: MachineID) {
        guard let link = links[id] else { return }
        for route in link.io.routes { try? backend.removeRoute(configuration.interfaceName, route) }
        peers.update(id) {
            $0.routes = []
            $0.allowedIPs = []
            $0.refused = [:]
        }
        reinstallRoutes(peersRefused(besides: id))
    }

    /// The policy for `id`'s prefixes: the other peers' allowed IPs are theirs, and the addresses
    /// the agent reaches outside the tunnel stay outside.
    private func routePolicy(for id: MachineID, _ kernel: [KernelRoute]) -> RoutePolicy {
        var held: [(peer: String, prefix: IPPrefix)] = []
        var underlay = ([configuration.control] + configuration.stun + configuration.preferredRelays).compactMap { names.endpoint($0)?.address }
            + peers.relayAddresses
        for (other, link) in links {
            underlay += PeerConnection.publicEndpoints(link.record).map { $0.address }
            if other != id { held += link.io.allowedIPs.map { ("\(link.record.key)", $0) } }
        }
        return RoutePolicy(interfaceName: configuration.interfaceName, ownAddresses: configuration.addresses, kernelRoutes: kernel,
                           held: held, underlay: underlay)
    }
}
