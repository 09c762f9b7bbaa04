import Foundation
import LabSupport
import Net
import Punch
import STUN

/// One side of a punch: the raw path on the port wireguard-go owns, and the pure session.
struct PunchSide {
    let socket: RawPortSocket
    var session: PunchSession

    mutating func run(_ effects: [PunchSession.Effect]) throws {
        for effect in effects { if case .send(let bytes, let to) = effect { _ = try? socket.send(bytes, to: to) } }
    }

    mutating func poll() throws {
        while let datagram = try socket.receive() { try run(session.receive(datagram.payload, from: datagram.source)) }
    }
}

/// Two sites behind the given NATs, each client with wireguard-go on 51820, a STUN server with
/// two addresses, and the punch between them run in this process (raw sockets opened inside the
/// client namespaces).
final class PunchCell {
    struct Result {
        var plan: DirectPathPlan
        var pinnedA: Endpoint?
        var pinnedB: Endpoint?
        var elapsed: Duration
        var predictionProbes = 0
        var direct: Bool { pinnedA != nil && pinnedB != nil }
        var summary: String {
            direct ? "direct in \(elapsed.milliseconds) ms" : "no direct path after \(elapsed.milliseconds) ms (relay)"
        }
    }

    let lab: Lab
    let siteA: Site, siteB: Site
    let keyA = Member(), keyB = Member()
    /// The punch session of the latest run (a new one each run, as the control server would give).
    private(set) var session: UInt64 = 0
    private(set) var reflexiveA = Endpoint("0.0.0.0:0")!, reflexiveB = Endpoint("0.0.0.0:0")!
    private(set) var sideA: PunchSide?, sideB: PunchSide?

    init(lab: Lab, a: NATBehaviour, b: NATBehaviour) throws {
        self.lab = lab
        siteA = try lab.addSite(a)
        siteB = try lab.addSite(b)
        try lab.spawn(in: lab.stunHost, [Products.lanrage, "stun-server", "--listen", "192.0.2.1:3478",
                                         "--alternate", "192.0.2.2:3479"], log: "stun.log")
        try lab.stunHost.waitForUDPListener(Endpoint("192.0.2.2:3479")!)
        let tag = lab.prefix.split(separator: "-").last.map(String.init) ?? "0"
        try lab.startWireGuardGo(in: siteA.client, interface: "pa\(getpid() % 1000)x\(tag)", listenPort: 51820)
        try lab.startWireGuardGo(in: siteB.client, interface: "pb\(getpid() % 1000)x\(tag)", listenPort: 51820)
    }

    /// Detects both NATs on the WireGuard port, then punches per the compatibility table.
    func run() throws -> Result {
        session = UInt64.random(in: 1...UInt64.max)
        let socketA = try siteA.client.inside { try RawPortSocket(port: 51820) }
        let socketB = try siteB.client.inside { try RawPortSocket(port: 51820) }
        let reportA = try detect(socketA, site: siteA), reportB = try detect(socketB, site: siteB)
        reflexiveA = reportA.publicEndpoint
        reflexiveB = reportB.publicEndpoint
        let plan = DirectPathPlan(local: reportA.natType, remote: reportB.natType)
        let start = ContinuousClock.now
        guard plan.directPossible else { return Result(plan: plan, elapsed: .zero) }

        let pairA = PairKey(localPrivateKey: keyA.privateKey, localPublicKey: keyA.publicKey, remotePublicKey: keyB.publicKey)!
        let pairB = PairKey(localPrivateKey: keyB.privateKey, localPublicKey: keyB.publicKey, remotePublicKey: keyA.publicKey)!
        // Candidates: the peer's local address first, then its reflexive endpoint.
        var a = PunchSide(socket: socketA, session: PunchSession(key: pairA, session: session, candidates: [
            Endpoint(.v4(siteB.clientAddress), 51820), reflexiveB]))
        var b = PunchSide(socket: socketB, session: PunchSession(key: pairB, session: session, candidates: [
            Endpoint(.v4(siteA.clientAddress), 51820), reflexiveA]))
        // The port-restricted side of a port-restricted ↔ symmetric pair also probes predicted ports.
        var generator = SystemRandomNumberGenerator()
        var predictionProbes = 0
        func predicted(for report: NATReport) -> [Endpoint] {
            let observed = report.servers.compactMap { $0.mappedAddress?.port }
            let prediction = PortPrediction(observed: observed, budget: 256, using: &generator)
            return prediction.ports.map { Endpoint(report.publicEndpoint.address, $0) }
        }

        for burst in 0..<2 {
            for packet in 0..<5 {
                try a.run(a.session.burst())
                try b.run(b.session.burst())
                if plan == .punchWithPortPrediction, packet == 0 {
                    if reportA.natType == .portRestrictedCone {
                        let probes = predicted(for: reportB); predictionProbes += probes.count; try a.run(a.session.probe(probes))
                    } else {
                        let probes = predicted(for: reportA); predictionProbes += probes.count; try b.run(b.session.probe(probes))
                    }
                }
                if try wait(.milliseconds(100), &a, &b) { return finish(plan, a, b, start, burst, predictionProbes) }
            }
            if try wait(.milliseconds(2000), &a, &b) { return finish(plan, a, b, start, burst, predictionProbes) }
        }
        sideA = a; sideB = b
        return Result(plan: plan, pinnedA: a.session.pinned, pinnedB: b.session.pinned,
                      elapsed: ContinuousClock.now - start, predictionProbes: predictionProbes)
    }

    private func finish(_ plan: DirectPathPlan, _ a: PunchSide, _ b: PunchSide, _ start: ContinuousClock.Instant,
                        _ burst: Int, _ probes: Int) -> Result {
        sideA = a; sideB = b
        return Result(plan: plan, pinnedA: a.session.pinned, pinnedB: b.session.pinned,
                      elapsed: ContinuousClock.now - start, predictionProbes: probes)
    }

    /// Forgets every NAT mapping and filter on both routers, so the next run starts cold.
    func flushNATState() throws {
        for site in [siteA, siteB] { try site.router.run(["conntrack", "-F"], allowFailure: true) }
    }

    /// Polls both sides for up to `duration`; `true` once both have pinned.
    private func wait(_ duration: Duration, _ a: inout PunchSide, _ b: inout PunchSide) throws -> Bool {
        let deadline = ContinuousClock.now + duration
        repeat {
            try a.poll()
            try b.poll()
            if a.session.pinned != nil, b.session.pinned != nil { return true }
            usleep(1000)
        } while ContinuousClock.now < deadline
        return false
    }

    private func detect(_ socket: RawPortSocket, site: Site) throws -> NATReport {
        let servers = [Endpoint("192.0.2.1:3478")!]
        switch try NATDetector.run(servers: servers, socket: socket, localAddresses: [.v4(site.clientAddress)]) {
        case .success(let report): return report
        case .failure(let failure): throw CommandFailure(command: ["discovery"], status: 1, output: failure.description)
        }
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
