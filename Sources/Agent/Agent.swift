import CLinux
import Control
import DNS
import EventLoop
import Net
import Output
import Peer
import Punch
import Relay
import Rendezvous
import STUN
import StateChart
import WireGuard
import Time

/// `lanrage agent`: joins the party, and for every other member drives a peer machine through
/// Discovering → Detecting → Punching → Direct | Relaying → Keepalive, executing its actions for
/// real — STUN and punches on the WireGuard port, WireGuard's endpoint, allowed IPs and keepalive,
/// relay allocations. One thread: the epoll loop runs the control client, the peer machines, the
/// port socket, relay requests, NAT detection and the status socket.
public final class Agent {
    public private(set) var configuration: AgentConfiguration
    let path: String?
    let loop: EventLoop
    /// The one clock: every timer, timeout and timestamp of the agent reads it.
    let clock: any TimeSource
    let backend: any WireGuardBackend
    /// Whether the agent created the interface (then it deletes it on shutdown).
    let createdInterface: Bool
    let port: any PortSocket
    let driver: PunchDriver<MachineID, UDPSocket>
    let publicKey: Key
    let memberKey: MemberKey
    var control: ControlClient!
    /// Every peer's machine and connection; the agent is its I/O.
    var peers: PeerExecutor<Agent>!
    var detector: NATDetector!
    var relays: RelayClient!
    var alarms: Alarms!
    /// The servers given by host name, resolved on the loop.
    var names: ServerNames!
    var status: StatusServer?
    /// The WireGuard port's NAT behaviour, as the detector's last answer has it (``NATDetector/report``).
    var report: NATReport? { detector.report }
    /// The WireGuard port's public endpoint, known from the first STUN answer (before the report).
    var reflexive: Endpoint?
    var natType = NATType.unknown
    /// The public endpoint of the WireGuard port announced to the party (STUN's), if known.
    var publicCandidate: Endpoint?
    /// Asks the default gateway to map the WireGuard port (PCP, NAT-PMP, UPnP-IGD), when it is configured to.
    var portMapper: PortMapper?
    /// The interface's MTU, as set (`MTU =`, or the path MTU toward the control server less 80).
    var mtu = 0
    /// The public endpoint the control server saw when last registered (a change means a new address).
    var lastObserved: Endpoint?
    var registeredSince: Nanoseconds?
    /// Why the agent is not registered, as last learned; cleared once registered.
    var problem: RegistrationProblem?
    var sweptStalePeers = false
    var device: (read: Device, at: Nanoseconds)?
    /// WireGuard peer changes made during the current round of the loop, applied as one device
    /// change at its end (or before WireGuard is read): a transition that removes, re-adds and
    /// kicks a peer costs one WireGuard call, as wireguard-tools' `set_device` does.
    var pendingPeerChanges: [PeerChange] = []
    let startedAt: Nanoseconds
    /// The peers, by machine.
    var links: [MachineID: AgentLink] { peers.links }
    var scheduler: Scheduler<PeerExecutor<Agent>> { peers.scheduler }
    /// The interface the agent created (and wireguard-go serving it), nil when adopted.
    private var creation: InterfaceCreation?
    /// Why the agent stopped on its own, thrown by `run()`.
    private var failure: AgentFailure?
    let logger: Logger

    /// How often housekeeping runs: stale peer sweep, address change check, periodic NAT rediscovery.
    static let housekeeping: Duration = .seconds(2)
    static let rediscoveryInterval: Nanoseconds = 600_000_000_000

    /// Starts creating the interface (or adopts it), sets up the sockets and the control client;
    /// `run()` starts the work.
    public init(_ configuration: AgentConfiguration, path: String? = nil, logger: Logger = Logger(label: "lanrage.agent"),
                clock: any TimeSource = SystemClock()) throws(AgentFailure) {
        self.configuration = configuration
        self.clock = clock
        self.path = path
        self.logger = logger
        startedAt = clock.now
        try starting { () throws(WireGuardError) in try Privileges.requireNetAdmin("run the agent") }
        let name = configuration.interfaceName
        let backend = try starting { () throws(WireGuardError) in try Backends.select(configuration.backend, interface: name) }
        self.backend = backend
        if if_nametoindex(name) == 0 {
            // WireGuard will bind the port: nothing is created when something else holds it.
            try starting { () throws(WireGuardError) in try requireFreePort(configuration.listenPort, for: name) }
            creation = try starting { () throws(WireGuardError) in try backend.beginCreatingInterface(named: name) }
            createdInterface = true
        } else {
            // Adopting: it must be a WireGuard interface this backend can read; its peers stay until the
            // party's membership is known (a restarted agent keeps tunnels up meanwhile).
            _ = try starting { () throws(WireGuardError) in try backend.device(named: name) }
            createdInterface = false
        }
        publicKey = configuration.privateKey.publicKey
        memberKey = MemberKey(publicKey.bytes)!
        do throws(AgentFailure) {
            // WireGuard owns the port (or will, once configured): LANrage's datagrams take the raw path.
            let port = try starting { () throws(SystemError) in try RawPortSocket(port: configuration.listenPort) }
            self.port = port
            driver = PunchDriver(socket: port, clock: clock)
            let clock = clock
            loop = try starting { () throws(SystemError) in try EventLoop(clock: clock) }
            try wire()
        } catch {
            if createdInterface { Self.remove(name, creation, from: backend) }
            throw error
        }
    }

    /// Deletes an interface the agent created, once its creation has finished (a wireguard-go still
    /// starting would create it after the deletion).
    private static func remove(_ name: String, _ creation: InterfaceCreation?, from backend: any WireGuardBackend) {
        try? creation?.wait()
        try? backend.deleteInterface(named: name)
    }

    private func wire() throws(AgentFailure) {
        peers = PeerExecutor(io: self, privateKey: configuration.privateKey.bytes, publicKey: memberKey, timings: configuration.timings,
                             clock: clock, logger: Logger(label: "lanrage.peer"))
        loop.addTimers(peers.scheduler)
        detector = NATDetector(socket: port, clock: clock) { [unowned(unsafe) self] result in self.detected(result) }
        detector.mapped = { [unowned(unsafe) self] endpoint in self.mappedEndpointLearned(endpoint) }
        loop.addTimers(detector)
        let (loop, clock) = (loop, clock)
        relays = try starting { () throws(SystemError) in try RelayClient(loop: loop, clock: clock) }
        let listenPort = configuration.listenPort
        portMapper = PortMapper(port: listenPort, protocols: configuration.portMapping,
                                nonce: PortMapper.nonce(port: listenPort, secret: configuration.privateKey.bytes),
                                loop: loop, clock: clock)
        portMapper?.onChange = { [unowned(unsafe) self] in self.mappingChanged() }
        portMapper?.start()
        alarms = Alarms(clock: clock)
        loop.addTimers(alarms)
        names = ServerNames(resolver: Resolver(loop: loop, clock: clock), alarms: alarms, logger: Logger(label: "lanrage.names"))
        names.onResolved = { [unowned(unsafe) self] name, moved in self.serverNameResolved(name, moved: moved) }
        names.onFailed = { [unowned(unsafe) self] name, error in
            if name == self.configuration.control.name, self.control.state == .idle || self.problem != nil { self.report(.unresolved(reason: error.description)) }
        }
        try starting { () throws(SystemError) in try loop.register(port.descriptor) { [unowned(unsafe) self] in self.portReadable() } }

        // A control server given by name gets its address when the name resolves.
        let server = names.endpoint(configuration.control) ?? Endpoint(.v4(IPv4Address(0)), configuration.control.port)
        var client = ControlClient.Configuration(server: server, serverKey: configuration.controlKey, party: configuration.party,
                                                 authority: configuration.authority, key: memberKey,
                                                 certificate: configuration.certificate.encoded)
        client.candidates = localCandidates()
        let privateKey = configuration.privateKey.bytes
        control = try starting { () throws(SystemError) in
            try ControlClient(client, privateKey: privateKey, loop: loop, clock: clock, logger: Logger(label: "lanrage.registration"))
        }
        control.onChange = { [unowned(unsafe) self] event, record in self.peers.memberChanged(event, record) }
        control.onPunch = { [unowned(unsafe) self] record, start in self.peers.punchAnnounced(record, startMillis: start) }
        control.onRelays = { [unowned(unsafe) self] key, offers in self.peers.relaysOffered(key, offers) }
        control.onRefused = { [unowned(unsafe) self] refusal in
            self.logger.notice("control server refused a request", metadata: ["reason": "\(refusal)"])
            // registerAgain is routine (a restarted server), the others concern requests, clockSkew comes with its offset.
            guard [.certificateRefused, .revoked, .partyFull].contains(refusal) else { return }
            self.report(.refused(refusal))
        }
        control.onClockSkew = { [unowned(unsafe) self] offset in self.report(.clockSkew(offsetMillis: offset)) }
        control.onRegistered = { [unowned(unsafe) self] in
            guard self.problem != nil else { return }
            self.logger.notice("registered with the control server", metadata: ["server": "\(self.control.configuration.server)"])
            self.problem = nil
        }
        control.onBadCertificate = { [unowned(unsafe) self] key, problem in
            self.logger.warning("member ignored: its certificate does not verify", metadata: ["peer": "\(key)", "reason": "\(problem)"])
        }
        control.onVersionMismatch = { [unowned(unsafe) self] lowest, highest in
            self.report(.protocolVersion(lowest: lowest, highest: highest))
        }
        control.onUnanswered = { [unowned(unsafe) self] rounds in
            // A dynamic-DNS name may have moved to another address.
            if let name = self.configuration.control.name { self.names.resolve(name) }
            // A refusal, a skewed clock or another version explains the silence better.
            if case .unanswered = self.problem ?? .unanswered(rounds: 0) { self.report(.unanswered(rounds: rounds)) }
        }
        let group = SystemGroup.id(named: SystemGroup.statusGroup)
        status = try StatusServer(path: configuration.statusSocket, group: group, loop: loop, clock: clock) { [unowned(unsafe) self] request in self.answer(request) }
        loop.addTimers(Ticker(every: Self.housekeeping, clock: clock) { [unowned(unsafe) self] in self.housekeep() })
        loop.afterRound = { [unowned(unsafe) self] in self.applyPeerChanges() }
        try starting { () throws(SystemError) in
            try loop.handleSignals { [unowned(unsafe) self] signal in
                if signal == SIGHUP { self.reload() } else { self.shutdown(reason: signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "signal \(signal)") }
            }
        }
    }

    /// Registers, detects the NAT and serves until SIGTERM or SIGINT. The registration and the first
    /// STUN requests leave before the interface is ready: wireguard-go starts meanwhile, and their
    /// answers wait in the sockets.
    public func run() throws(AgentFailure) {
        if names.endpoint(configuration.control) != nil { control.start() }
        rediscover()
        for name in configuration.hostNames { names.resolve(name) }
        try readyInterface()
        let loop = loop
        try starting { () throws(SystemError) in try loop.run() }
        if let failure { throw failure }
    }

    /// Waits for the interface being created, then gives it the key, the port and the addresses.
    private func readyInterface() throws(AgentFailure) {
        let name = configuration.interfaceName
        do throws(AgentFailure) {
            let (backend, creation, configuration) = (backend, creation, configuration)
            try starting { () throws(WireGuardError) in try creation?.wait() }
            do throws(WireGuardError) {
                try backend.configure(name, DeviceChange(privateKey: configuration.privateKey, listenPort: configuration.listenPort))
            } catch {
                throw AgentFailure("WireGuard interface \(name) cannot take ListenPort \(configuration.listenPort): \(error)", exitCode: error.exitCode)
            }
            let mtu = Self.mtu(configuration, toward: names.endpoint(configuration.control))
            try starting { () throws(WireGuardError) in
                try backend.setAddresses(name, configuration.addresses)
                try backend.setMTU(name, mtu)
                try backend.setLinkUp(name, true)
            }
            self.mtu = mtu
        } catch {
            control.stop()
            status?.close()
            if createdInterface { Self.remove(name, creation, from: backend) }
            throw error
        }
        logger.info("interface ready", metadata: [
            "interface": "\(name)", "backend": "\(backend.kind)", "created": "\(createdInterface)",
            "port": "\(configuration.listenPort)", "public_key": "\(publicKey.base64)", "mtu": "\(mtu)",
        ])
    }

    /// The MTU for `configuration`: its own, or the path MTU toward its control server less
    /// WireGuard's overhead (1420 while the server's name has no address yet).
    static func mtu(_ configuration: AgentConfiguration, toward control: Endpoint?) -> Int {
        configuration.mtu ?? AgentConfiguration.defaultMTU(path: control.flatMap { PathMTU.toward($0) })
    }

    /// Starts NAT detection with the STUN servers whose addresses are known.
    public func rediscover() {
        let servers = configuration.stun.compactMap { names.endpoint($0) }
        if !servers.isEmpty { detector.start(servers: servers) }
    }

    /// A server name got its first address or a new one: the control client sends there from now
    /// on (and starts, the first time); NAT detection runs again with a STUN server's.
    private func serverNameResolved(_ name: String, moved: Bool) {
        if case .unresolved = problem, name == configuration.control.name { problem = nil }
        guard moved else { return }
        if name == configuration.control.name, let server = names.endpoint(configuration.control) {
            do { try control.moveServer(to: server) } catch {
                logger.error("no socket toward the control server", metadata: ["error": "\(error)"])
            }
            if control.state == .idle { control.start() }
        }
        if configuration.stun.contains(where: { $0.name == name }) { rediscover() }
    }

    // MARK: Lifecycle

    /// Leaves the party, removes the WireGuard peers (and the interface when the agent created it).
    func shutdown(reason: String) {
        logger.info("shutting down", metadata: ["reason": "\(reason)"])
        control.stop()
        portMapper?.stop()
        let name = configuration.interfaceName
        for link in links.values {
            try? backend.removePeer(name, link.io.publicKey)
            for route in link.io.routes { try? backend.removeRoute(name, route) }
        }
        if createdInterface, if_nametoindex(name) != 0 {
            do { try backend.deleteInterface(named: name) } catch { logger.error("could not delete the interface", metadata: ["error": "\(error)"]) }
        }
        status?.close()
        loop.stop()
    }

    /// SIGHUP: reads the configuration again. Addresses, relay preferences, STUN servers and timings
    /// apply at once (NAT detection runs again); a new key, port, interface or party needs a restart.
    func reload() {
        guard let path else { return }
        let fresh: AgentConfiguration
        do { fresh = try AgentConfiguration.load(path) } catch {
            logger.error("reload refused, the running configuration stays", metadata: ["error": "\(error)"])
            return
        }
        let old = configuration
        var needsRestart: [String] = []
        if fresh.privateKey != old.privateKey { needsRestart.append("PrivateKey") }
        if fresh.listenPort != old.listenPort { needsRestart.append("ListenPort") }
        if fresh.interfaceName != old.interfaceName { needsRestart.append("Name") }
        if fresh.control != old.control || fresh.controlKey != old.controlKey || fresh.party != old.party || fresh.authority != old.authority {
            needsRestart.append("[Party]")
        }
        if fresh.statusSocket != old.statusSocket || fresh.backend != old.backend { needsRestart.append("[Agent] Backend/StatusSocket") }
        var applied = configuration
        applied.addresses = fresh.addresses
        applied.relaysEnabled = fresh.relaysEnabled
        applied.preferredRelays = fresh.preferredRelays
        applied.stun = fresh.stun
        applied.timings = fresh.timings
        applied.mtu = fresh.mtu
        applied.certificate = fresh.certificate
        configuration = applied
        if fresh.certificate != old.certificate {
            // A renewed certificate: the server takes it with the next registration, sent now.
            control.configuration.certificate = fresh.certificate.encoded
            control.update(nat: control.configuration.nat, candidates: control.configuration.candidates)
        }
        if fresh.addresses != old.addresses {
            do { try backend.setAddresses(configuration.interfaceName, fresh.addresses) } catch {
                logger.error("could not set the new addresses", metadata: ["error": "\(error)"])
            }
            // Prefixes that overlapped the old addresses may be free now, and new ones may be refused.
            reinstallRoutes(links.keys.sorted())
        }
        if fresh.mtu != old.mtu {
            let mtu = Self.mtu(fresh, toward: names.endpoint(fresh.control))
            do {
                try backend.setMTU(configuration.interfaceName, mtu)
                self.mtu = mtu
            } catch {
                logger.error("could not set the new MTU", metadata: ["mtu": "\(mtu)", "error": "\(error)"])
            }
        }
        if fresh.timings != old.timings { peers.timings = fresh.timings }
        for name in configuration.hostNames { names.resolve(name) }
        rediscover()
        logger.info("configuration reloaded", metadata: needsRestart.isEmpty ? [:] : ["needs_restart": "\(needsRestart.joined(separator: ","))"])
    }

    func housekeep() {
        if let status = creation?.exitStatus() {
            // The interface went with it: exit non-zero, a supervisor's restart builds everything afresh.
            failure = AgentFailure("\(creation?.program ?? "wireguard-go") serving \(configuration.interfaceName) exited with status \(status)")
            logger.critical("WireGuard is gone", metadata: ["error": "\(failure!)"])
            creation = nil
            shutdown(reason: "WireGuard is gone")
            return
        }
        let now = clock.now
        if control.state == .registered {
            if registeredSince == nil { registeredSince = now }
            if let observed = control.observed, observed != lastObserved {
                if lastObserved != nil {
                    logger.notice("public address changed", metadata: ["old": "\(lastObserved!)", "new": "\(observed)"])
                    rediscover()
                }
                lastObserved = observed
                if portMapper?.machine.mapped != nil { announce() }
            }
        } else {
            registeredSince = nil
        }
        if !sweptStalePeers, let since = registeredSince, now - since > 10_000_000_000 {
            sweptStalePeers = true
            removeStrangers()
        }
        if let started = detector.startedAt, clock.now - started > Self.rediscoveryInterval { rediscover() }
    }

    /// Removes WireGuard peers that are not party members (left over from an earlier run).
    private func removeStrangers() {
        guard let current = readDevice() else { return }
        let members = Set(links.values.map { $0.io.publicKey })
        for peer in current.peers where !members.contains(peer.publicKey) {
            try? backend.removePeer(configuration.interfaceName, peer.publicKey)
            logger.info("removed a WireGuard peer that is not in the party", metadata: ["peer": "\(MemberKey(peer.publicKey.bytes).map { "\($0)" } ?? "?")"])
        }
    }

    /// Records why the agent is not registered; a new problem (another kind, or a clock off by
    /// another whole second) is logged as a warning, a repeated one only at debug level.
    func report(_ found: RegistrationProblem) {
        let new: Bool
        switch (problem, found) {
        case (.clockSkew(let old)?, .clockSkew(let offset)): new = old / 1000 != offset / 1000
        case (.unanswered?, .unanswered): new = false
        default: new = problem != found
        }
        problem = found
        let metadata: Logger.Metadata = ["server": "\(configuration.control)", "problem": "\(found.kind)"]
        if new {
            logger.warning("not registered: \(found.explanation(server: configuration.control))", metadata: metadata)
        } else {
            logger.debug("not registered: \(found.explanation(server: configuration.control))", metadata: metadata)
        }
    }

    // MARK: NAT

    /// The first STUN answer: the peers get the reflexive candidate at once (punches need it), the
    /// NAT type follows when the behaviour tests end.
    func mappedEndpointLearned(_ endpoint: Endpoint) {
        guard endpoint != reflexive else { return }
        reflexive = endpoint
        publicCandidate = endpoint
        announce()
        peers.publicEndpointLearned()
    }

    func detected(_ result: Result<NATReport, DiscoveryFailure>) {
        switch result {
        case .success(let found):
            reflexive = found.publicEndpoint
            logger.info("NAT detected", metadata: ["nat": "\(found.natType.rawValue)", "public": "\(found.publicEndpoint)",
                                                   "mapping": "\(found.mapping.rawValue)", "filtering": "\(found.filtering.rawValue)"])
        case .failure(let failure):
            logger.warning(report == nil ? "NAT detection failed; punching anyway" : "NAT detection failed; the last answer stands",
                           metadata: ["reason": "\(failure)"])
        }
        natType = report?.natType ?? .unknown
        publicCandidate = report?.publicEndpoint
        announce()
        peers.natLearned()
    }

    /// The gateway granted, dropped or moved the mapping of the WireGuard port.
    private func mappingChanged() {
        if let mapped = portMapper?.machine.mapped {
            logger.info("port mapped", metadata: ["protocol": "\(mapped.protocolUsed.rawValue)", "external": "\(mapped.external)",
                                                  "lifetime_s": "\(mapped.lifetime)", "usable": usableMapping == nil ? "no" : "yes"])
        } else {
            logger.notice("no port mapping", metadata: ["gateway": "\(portMapper.map { "\($0.gateway)" } ?? "-")"])
        }
        announce()
        peers.natLearned()
    }

    /// The gateway's mapping of the WireGuard port, when it is on this side's public address (a
    /// gateway behind a carrier-grade NAT maps on an address nobody outside reaches).
    var usableMapping: PortMapping.Mapped? {
        // The public IPv4 address: where the control server saw this side (when it speaks IPv4 to
        // it), else the first STUN answer.
        guard let mapped = portMapper?.machine.mapped,
              let own = [lastObserved, reflexive].compactMap({ $0?.address }).first(where: { $0.family == AF_INET }),
              mapped.external.address == own else { return nil }
        return mapped
    }

    /// The NAT type the party is told: with a usable mapping, any peer reaches the mapped port, as
    /// through a full-cone NAT, whatever the NAT does with other ports.
    public var announcedNAT: NATType { usableMapping == nil ? natType : .fullCone }

    /// Tells the control server this side's NAT type and candidates: its own addresses, and the
    /// WireGuard port's public endpoint — the gateway's mapping when usable, else STUN's.
    func announce() {
        var candidates = localCandidates()
        if let endpoint = usableMapping?.external ?? publicCandidate { candidates.append(Candidate(.reflexive, endpoint)) }
        control.update(nat: announcedNAT, candidates: candidates)
    }

    /// This host's own addresses with the WireGuard port: candidates for peers on the same network,
    /// and over IPv6 for any peer that has it. Up to four IPv4 addresses (not loopback nor
    /// link-local) and two IPv6 ones (global or unique local), none inside the overlay.
    func localCandidates() -> [Candidate] {
        var v4: [Candidate] = [], v6: [Candidate] = []
        for address in (try? LocalAddresses.all(reachableOnly: true)) ?? [] {
            guard let host = IPPrefix(address, address.family == AF_INET ? 32 : 128),
                  !configuration.addresses.contains(where: { $0.contains(host) }) else { continue }
            let candidate = Candidate(.local, Endpoint(address, configuration.listenPort))
            switch address {
            case .v4(let a) where a.octets.0 != 127 && !(a.octets.0 == 169 && a.octets.1 == 254) && v4.count < 4: v4.append(candidate)
            case .v6(let a) where a.isRoutable && v6.count < 2: v6.append(candidate)
            default: break
            }
        }
        return v4 + v6
    }

    // MARK: The port

    /// Punch messages go to their sessions (pins become `punchAcked`); STUN answers to detection.
    private func portReadable() {
        let received: (pinned: [(MachineID, Endpoint)], other: [PortDatagram])
        do { received = try driver.receive() } catch {
            logger.warning("reading the WireGuard port failed", metadata: ["error": "\(error)"])
            return
        }
        for (id, endpoint) in received.pinned {
            logger.debug("pinned", metadata: ["peer": "\(links[id].map { "\($0.record.key)" } ?? "?")", "endpoint": "\(endpoint)"])
            peers.pinned(id)
        }
        for datagram in received.other where datagram.payload.count >= 20 { detector.received(datagram) }
    }

    // MARK: WireGuard

    /// The device, read again only when the last read is older than `maxAge`: one read serves
    /// every peer whose liveness tick falls near another's.
    func readDevice(maxAge: Duration = .milliseconds(200)) -> Device? {
        applyPeerChanges()
        let now = clock.now
        if let device, now - device.at < maxAge.nanoseconds { return device.read }
        do {
            let read = try backend.device(named: configuration.interfaceName)
            device = (read, now)
            return read
        } catch {
            logger.error("reading WireGuard failed", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
