import Foundation
import EventLoop
import LabSupport
import Net
import Peer
import Punch
import STUN
import StateChart
import Testing
import WireGuard
import Time

/// The Punching state of the peer chart, for real: two peer machines on the scheduler and the
/// epoll loop, in two NAT sites, wireguard-go owning port 51820 on each side. Their `sendPunch`
/// actions go to a `PunchDriver` on the raw path, a pin becomes `punchAcked`, `setDirectEndpoint`
/// configures WireGuard over UAPI, and WireGuard's own handshake, read back, confirms the path:
/// both machines reach keepalive on the direct path. Both start at one coordinated instant, as
/// the control server will give it.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct PeerChartPunchLabTests {
    /// Executes a peer machine's actions in the lab. Discovery and the start time come from the
    /// test (the control plane's job in the agent); the relay actions must not happen here.
    final class LabExecutor: ActionExecutor {
        typealias Spec = PeerChart
        weak var scheduler: Scheduler<LabExecutor>?
        let driver: PunchDriver<MachineID, UDPSocket>
        let backend: any WireGuardBackend
        let interface: String
        let ownKey: Key, peerKey: Key
        let candidates: [Endpoint]
        let startAt: Nanoseconds
        let directPossible: Bool
        let peerOverlay: IPPrefix
        var relayActions = 0
        var endpointSetAt: Int64 = 0
        var session: UInt64

        init(driver: PunchDriver<MachineID, UDPSocket>, backend: any WireGuardBackend, interface: String, ownKey: Key, peerKey: Key,
             candidates: [Endpoint], startAt: Nanoseconds, directPossible: Bool, peerOverlay: IPPrefix, session: UInt64) {
            self.driver = driver; self.backend = backend; self.interface = interface; self.ownKey = ownKey
            self.peerKey = peerKey; self.candidates = candidates; self.startAt = startAt
            self.directPossible = directPossible; self.peerOverlay = peerOverlay; self.session = session
        }

        func execute(_ action: PeerAction, for id: MachineID) {
            guard let scheduler else { return }
            switch action {
            case .requestCandidates:
                scheduler.post(.candidatesKnown, to: id, after: .nanoseconds(max(0, startAt - MonotonicTime.nanoseconds())))
            case .detectNAT:
                scheduler.updateContext(of: id) { $0.directPossible = directPossible }
                scheduler.post(.natKnown, to: id)
            case .startPunch:
                if driver.pinned(id) == nil, scheduler.machine(id)?.context.punchBursts == 1 {
                    let pair = PairKey(localPrivateKey: ownKey.bytes, localPublicKey: ownKey.publicKey.bytes, remotePublicKey: peerKey.bytes)!
                    driver.start(id, PunchSession(key: pair, session: session, candidates: candidates), observed: candidates.last?.address)
                }
                driver.burst(id)
            case .sendPunch:
                if driver.pinned(id) == nil, scheduler.machine(id)?.context.punchBursts == 1 {
                    let pair = PairKey(localPrivateKey: ownKey.bytes, localPublicKey: ownKey.publicKey.bytes, remotePublicKey: peerKey.bytes)!
                    driver.start(id, PunchSession(key: pair, session: session, candidates: candidates), observed: candidates.last?.address)
                }
                driver.burst(id)
            case .setDirectEndpoint:
                endpointSetAt = Int64(Date().timeIntervalSince1970)
                try? backend.configure(interface, DeviceChange(peers: [PeerChange(publicKey: peerKey, endpoint: driver.pinned(id),
                                                                                   replaceAllowedIPs: true, allowedIPs: [peerOverlay])]))
            case .enableKeepalive:
                try? backend.configure(interface, DeviceChange(peers: [PeerChange(publicKey: peerKey, updateOnly: true, persistentKeepalive: 1)]))
            case .readHandshake:
                let handshake = (try? backend.device(named: interface))?.peer(peerKey)?.lastHandshake
                let now = Int64(Date().timeIntervalSince1970)
                scheduler.updateContext(of: id) {
                    $0.handshakeAge = handshake.map { .seconds(now - $0.seconds) }
                    $0.pathConfirmed = handshake.map { $0.seconds >= endpointSetAt - 1 } ?? false
                }
                scheduler.post(.wireGuardRead, to: id)
            case .allocateRelay, .setRelayEndpoint, .releaseRelay, .removePeer:
                // Detecting asks for the early relay (there is none in this lab); a relayed path would set its endpoint.
                relayActions += action == .setRelayEndpoint ? 1 : 0
            case .endPunch, .rediscoverNAT:
                // No fan, and no NAT detection beyond the run's own in this lab.
                break
            }
        }

        /// Reads the raw socket: pins become `punchAcked`.
        func readable(_ id: MachineID) {
            guard let (pinned, _) = try? driver.receive() else { return }
            for (peer, _) in pinned where peer == id { scheduler?.post(.punchAcked, to: id) }
        }
    }

    @Test(arguments: [(NATBehaviour.restrictedCone, NATBehaviour.symmetric), (.portRestrictedCone, .fullCone)])
    func bothMachinesReachKeepaliveOnTheDirectPath(_ a: NATBehaviour, _ b: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(a), try lab.addSite(b)]
        try lab.spawn(in: lab.stunHost, [Products.lanrage, "stun-server", "--listen", "192.0.2.1:3478", "--alternate", "192.0.2.2:3479"],
                      log: "stun.log")
        try lab.stunHost.waitForUDPListener(Endpoint("192.0.2.2:3479")!)
        let tag = lab.prefix.split(separator: "-").last.map(String.init) ?? "0"
        let names = ["pka\(getpid() % 1000)x\(tag)", "pkb\(getpid() % 1000)x\(tag)"]
        var keys: [Key] = []
        var sockets: [RawPortSocket] = []
        var reports: [NATReport] = []
        let overlays = [IPPrefix("100.64.7.1/32")!, IPPrefix("100.64.7.2/32")!]
        for (index, site) in sites.enumerated() {
            try lab.startWireGuardGo(in: site.client, interface: names[index], listenPort: 51820)
            try site.client.run("ip", "addr", "add", "\(overlays[index].address)/24", "dev", names[index])
            let keyText = try String(contentsOf: lab.directory.appendingPathComponent("\(names[index]).key"), encoding: .utf8)
            keys.append(try #require(Key(base64: keyText.trimmingCharacters(in: .whitespacesAndNewlines))))
            let socket = try site.client.inside { try RawPortSocket(port: 51820) }
            sockets.append(socket)
            let result = try NATDetector.run(servers: [Endpoint("192.0.2.1:3478")!], socket: socket,
                                                 localAddresses: [.v4(site.clientAddress)])
            reports.append(try result.get())
        }
        let plan = DirectPathPlan(local: reports[0].natType, remote: reports[1].natType)

        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        let startAt = clock.now + 500_000_000
        var schedulers: [Scheduler<LabExecutor>] = []
        var executors: [LabExecutor] = []
        for index in 0..<2 {
            let other = 1 - index
            let executor = LabExecutor(
                driver: PunchDriver(socket: sockets[index]), backend: UAPIBackend(), interface: names[index],
                ownKey: keys[index], peerKey: keys[other].publicKey,
                candidates: [Endpoint(.v4(sites[other].clientAddress), 51820), reports[other].publicEndpoint],
                startAt: startAt, directPossible: plan.directPossible, peerOverlay: overlays[other], session: 99)
            let scheduler = Scheduler(chart: PeerChart.chart(), clock: clock, executor: executor)
            executor.scheduler = scheduler
            loop.addTimers(scheduler)
            try loop.register(sockets[index].descriptor) { executor.readable(MachineID(0)) }
            schedulers.append(scheduler)
            executors.append(executor)
        }
        var states: [[PeerState]] = [[], []]
        for index in 0..<2 {
            schedulers[index].onTransition = { record in
                states[index].append(record.transition.to)
                if states[0].last == .keepalive, states[1].last == .keepalive { loop.stop() }
            }
            schedulers[index].add(name: names[1 - index], context: PeerContext())
        }
        try loop.run(until: clock.now + 20_000_000_000)

        for index in 0..<2 {
            let machine = try #require(schedulers[index].machine(MachineID(0)))
            #expect(machine.state == .keepalive, "side \(index): \(states[index])")
            #expect(machine.context.path == .direct)
            #expect(executors[index].relayActions == 0, "no relayed path on a direct pair")
            // The states it went through, repeats (internal transitions, retries) folded.
            let path = states[index].reduce(into: [PeerState]()) { if $0.last != $1 { $0.append($1) } }
            #expect(path == [.detecting, .punching, .direct, .keepalive], "side \(index)")
        }
        // WireGuard carries traffic on the pinned path.
        let ping = try sites[0].client.run(["ping", "-c", "2", "-W", "2", "100.64.7.2"], allowFailure: true)
        #expect(ping.contains(" 0% packet loss"), "\(ping)")
    }
}
