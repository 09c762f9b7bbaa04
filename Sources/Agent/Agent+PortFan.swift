import EventLoop
import Net
import Output
import Peer
import Punch
import Rendezvous
import STUN

/// Port-restricted cone ↔ symmetric NAT, direct: the birthday attack on a random port allocator.
///
/// The port-restricted side lets in only datagrams from an address and port it sent to first, and
/// the symmetric side's NAT gives every new destination a random public port: a single mapping is
/// one port in 64,512 to guess. So the symmetric side punches from a fan of extra ports (each its
/// own mapping toward the peer's public endpoint) while the port-restricted side sprays PUNCHes
/// at random ports of the symmetric side's public address from its WireGuard port: any guess that
/// hits any fan port opens the path. With 256 fan ports and 1,024 guesses an attempt succeeds with
/// probability 1 − (1 − 256/64,512)^1,024 ≈ 98 %. The winning fan port then carries the peer's
/// WireGuard traffic through a ``LocalForwarder`` (WireGuard cannot send from it). Which side does
/// what is the peer executor's decision; this is the I/O of both.
extension Agent {
    /// Opens up to ``DirectPathPlan/fanPorts`` fan ports (within the driver's limit over all peers) punching toward `target`.
    public func openFan(_ id: MachineID, toward target: Endpoint) {
        var sockets: [UDPSocket] = []
        for _ in 0..<driver.fanPortsAvailable {
            guard let socket = try? UDPSocket(binding: Endpoint(.v4(IPv4Address(0)), 0)) else { break }
            do { try loop.register(socket.descriptor) { [unowned(unsafe) self, unowned(unsafe) socket] in self.fanReadable(id, socket) } } catch { break }
            sockets.append(socket)
        }
        if sockets.count < DirectPathPlan.fanPorts {
            logger.notice("fewer fan ports than wanted", metadata: ["opened": "\(sockets.count)", "wanted": "\(DirectPathPlan.fanPorts)"])
        }
        driver.fan(id, sockets, toward: target)
    }

    /// Closes the peer's fan ports (a forwarder keeps its own).
    func closeFan(_ id: MachineID) {
        for socket in driver.dropFan(id) { loop.unregister(socket.descriptor) }
    }

    /// Sprays PUNCHes from the WireGuard port at ``DirectPathPlan/sprayGuesses`` random ports of `address`.
    public func spray(_ id: MachineID, at address: IPAddress) {
        var generator = SystemRandomNumberGenerator()
        let guesses = PortPrediction.spray(at: address, using: &generator)
        let sent = driver.probe(id, guesses)
        if sent < guesses.count {
            logger.notice("fewer guesses than wanted (the per-minute allowance over all peers)",
                          metadata: ["peer": "\(links[id].map { "\($0.record.key)" } ?? "?")", "sent": "\(sent)", "wanted": "\(guesses.count)"])
        }
    }

    private func fanReadable(_ id: MachineID, _ socket: UDPSocket) {
        do {
            guard try driver.receive(id, on: socket) != nil else { return }
        } catch {
            logger.warning("reading a fan port failed", metadata: ["error": "\(error)"])
            return
        }
        logger.debug("pinned through a fan port", metadata: ["peer": "\(links[id].map { "\($0.record.key)" } ?? "?")", "port": "\(socket.port)"])
        peers.pinned(id)
    }

    /// Direct through the fan port `socket`: WireGuard's endpoint for the peer becomes a forwarder
    /// that carries its datagrams between loopback and that port; returns that endpoint (`nil` when
    /// the forwarder could not be set up).
    func forward(_ id: MachineID, through socket: UDPSocket, to remote: Endpoint) -> Endpoint? {
        closeFan(id)
        stopForwarding(id)
        let forwarder: LocalForwarder
        do {
            forwarder = try LocalForwarder(outside: socket, remote: remote, wireGuardPort: configuration.listenPort)
            try loop.register(socket.descriptor) { [unowned(unsafe) forwarder] in forwarder.outsideReadable() }
            try loop.register(forwarder.inside.descriptor) { [unowned(unsafe) forwarder] in forwarder.insideReadable() }
        } catch {
            loop.unregister(socket.descriptor)
            logger.error("could not forward the fan port", metadata: ["error": "\(error)"])
            return nil
        }
        peers.update(id) { $0.forwarder = forwarder }
        logger.info("direct through a fan port", metadata: ["peer": "\(links[id].map { "\($0.record.key)" } ?? "?")",
                                                            "port": "\(socket.port)", "remote": "\(remote)"])
        return forwarder.inside.local
    }

    /// Closes the peer's forwarder, if it has one.
    func stopForwarding(_ id: MachineID) {
        guard let forwarder = links[id]?.io.forwarder else { return }
        loop.unregister(forwarder.outside.descriptor)
        loop.unregister(forwarder.inside.descriptor)
        peers.update(id) { $0.forwarder = nil }
    }
}
