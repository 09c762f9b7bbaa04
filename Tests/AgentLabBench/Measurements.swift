import Foundation
import LabSupport
import Net
import Time

/// The six kinds of site a cell pairs: the five NAT behaviours, and a double NAT (port-restricted
/// behind port-restricted, which the client sees as port-restricted); each also with IPv6 beside
/// its IPv4 NAT (`Lab.enableIPv6`: routed, behind the home router's stateful filter), or with a
/// router that maps ports (miniupnpd).
struct SiteKind: CustomStringConvertible {
    /// What the router's miniupnpd speaks.
    enum Mapping: String {
        case natPMP = "natpmp"
        case upnp

        var name: String { self == .natPMP ? "PCP/NAT-PMP" : "UPnP-IGD" }
    }

    let behaviour: NATBehaviour
    let outer: NATBehaviour?
    var ipv6 = false
    var mapping: Mapping?

    static let all = NATBehaviour.allCases.map { SiteKind(behaviour: $0, outer: nil) }
        + [SiteKind(behaviour: .portRestrictedCone, outer: .portRestrictedCone)]

    /// The same site with IPv6 beside its IPv4 NAT.
    var dualStack: SiteKind { SiteKind(behaviour: behaviour, outer: outer, ipv6: true) }

    /// The same site with a router that maps ports by `mapping`.
    func mapping(_ mapping: Mapping) -> SiteKind { SiteKind(behaviour: behaviour, outer: outer, ipv6: ipv6, mapping: mapping) }

    var description: String {
        (outer == nil ? behaviour.rawValue : "double NAT") + (ipv6 ? " + IPv6" : "") + (mapping.map { " + \($0.name)" } ?? "")
    }

    /// Its key for `LANRAGE_LAB_CELLS`: open, full, restricted, port, symmetric, double; with a 6
    /// after it when the site has IPv6 (symmetric6), +natpmp or +upnp when its router maps ports.
    var key: String {
        let base: String
        if outer != nil {
            base = "double"
        } else {
            switch behaviour {
            case .open: base = "open"
            case .fullCone: base = "full"
            case .restrictedCone: base = "restricted"
            case .portRestrictedCone: base = "port"
            case .symmetric: base = "symmetric"
            }
        }
        return (ipv6 ? base + "6" : base) + (mapping.map { "+\($0.rawValue)" } ?? "")
    }

    func add(to lab: Lab) throws -> Site {
        let site = try lab.addSite(behaviour, behind: outer)
        if ipv6 { try lab.enableIPv6(on: site) }
        return site
    }
}

/// How long a run waits for the first answer, and for the direct path.
let runLimit: Duration = .seconds(30)

/// One run of one cell: times from both nodes started, nil where not reached within `runLimit`.
struct CellRun {
    var firstPing: Duration?
    /// The first answer across the direct path (the first ping if the path already was direct); nil
    /// for Nebula, which does not report its path.
    var direct: Duration?
}

/// Builds a fresh lab with two sites, starts one node behind each at the same instant and pings from
/// site A's client to B's overlay address every 10 ms until it answers.
func runCell(_ a: SiteKind, _ b: SiteKind, _ implementation: any Implementation) throws -> CellRun {
    try inLab { lab, start in
        let sites = [try a.add(to: lab), try b.add(to: lab)]
        let deployment = try implementation.deploy(in: lab, size: 2)
        // After the servers: miniupnpd tests its public address against the lab's STUN server. Only
        // for an implementation that asks for mappings.
        for (kind, site) in zip([a, b], sites) where implementation.mapsPorts {
            guard let mapping = kind.mapping else { continue }
            try lab.runMiniUPnPd(on: site, natPMP: mapping == .natPMP, upnp: mapping == .upnp)
        }
        let party = try start(deployment, sites.map(\.client))
        let pinger = try Pinger(in: sites[0].client)
        let target = party.deployment.overlayAddress(1)
        let answer = try pinger.firstAnswers(from: [target], every: .milliseconds(10), within: runLimit)[target]
        try Interrupt.check()
        guard let answer else { return CellRun(firstPing: nil, direct: nil) }
        let firstPing = answer - party.start
        guard let directAtOnce = try party.deployment.isDirect(node: 0) else { return CellRun(firstPing: firstPing, direct: nil) }
        if directAtOnce { return CellRun(firstPing: firstPing, direct: firstPing) }
        // Relayed first: poll until the path is direct (every 20 ms: the poll's period adds to the
        // figure), then the next answer is the first across it.
        while MonotonicTime.now() < party.start + runLimit {
            try Interrupt.check()
            usleep(20_000)
            if try party.deployment.isDirect(node: 0) == true,
               let answer = try pinger.firstAnswers(from: [target], every: .milliseconds(10), within: .seconds(1))[target] {
                return CellRun(firstPing: firstPing, direct: answer - party.start)
            }
        }
        return CellRun(firstPing: firstPing, direct: nil)
    }
}

/// One node's footprint among `peers` others.
struct PartyFootprint {
    /// From the nodes started to the last peer's first answer.
    var connected: Duration
    var residentKiB: Int
    /// wireguard-go's, for LANrage.
    var dataPlaneKiB: Int?
    /// CPU seconds node 0 used over `idleWindow` with every peer idle, when measured.
    var idleCPUSeconds: Double?
    var residentAfterIdleKiB: Int?
}

let idleWindow: Duration = .seconds(60)

/// Starts a party of `peers + 1` nodes, each on a host of its own on the internet (192.0.2.100 and
/// up); node 0 pings every other node until all have answered (120 s at most: a pair whose first punch failed and found no relay seat upgrades after 30 s), then its memory is read,
/// and with `idle` its CPU time over `idleWindow` while nothing is sent.
func measureParty(_ implementation: any Implementation, peers: Int, idle: Bool) throws -> PartyFootprint {
    try inLab { lab, start in
        let hosts = try (0...peers).map { try lab.addHost("p\($0)", address: IPv4Address(192, 0, 2, UInt8(100 + $0))) }
        let party = try start(implementation.deploy(in: lab, size: peers + 1), hosts)
        let targets = (1...peers).map(party.deployment.overlayAddress)
        let answers = try Pinger(in: hosts[0]).firstAnswers(from: targets, every: .milliseconds(100), within: .seconds(120))
        try Interrupt.check()
        let pid = party.processes[0].processIdentifier
        guard answers.count == peers else {
            let resident = ProcessFigures.residentKiB(pid).map { String(format: "%.1f MiB", Double($0) / 1024) } ?? "?"
            throw BenchFailure(description: "only \(answers.count) of \(peers) peers answered in 120 s (VmRSS then \(resident))")
        }
        if let directory = ProcessInfo.processInfo.environment["LANRAGE_LAB_SMAPS"] {
            // Where the resident memory is, mapping by mapping, for a closer look.
            // (Read by cat: Foundation stops at the first short read of a /proc file.)
            try? LabSupport.run(["cat", "/proc/\(pid)/smaps"])
                .write(toFile: "\(directory)/\(implementation.key)-\(peers)-peers.smaps", atomically: true, encoding: .utf8)
        }
        var footprint = PartyFootprint(connected: answers.values.max()! - party.start, residentKiB: ProcessFigures.residentKiB(pid) ?? 0,
                                       dataPlaneKiB: party.deployment.dataPlaneProcess(node: 0).flatMap(ProcessFigures.residentKiB))
        if idle, let before = ProcessFigures.cpuSeconds(pid) {
            let end = MonotonicTime.now() + idleWindow
            while MonotonicTime.now() < end {
                try Interrupt.check()
                usleep(200_000)
            }
            footprint.idleCPUSeconds = ProcessFigures.cpuSeconds(pid).map { $0 - before }
            footprint.residentAfterIdleKiB = ProcessFigures.residentKiB(pid)
        }
        return footprint
    }
}

/// A party's nodes, started at one instant.
struct StartedParty {
    let deployment: any Deployment
    let processes: [Process]
    /// The monotonic time just before the first node was spawned.
    let start: Duration
}

/// Runs `body` with a fresh lab and a function that starts one node per namespace of a deployment
/// (configurations written first, then every node spawned back to back). Tears everything down
/// afterwards, after a failure too: nodes stopped by PID, the deployment cleaned up, the lab shut down.
func inLab<Result>(_ body: (Lab, (any Deployment, [Namespace]) throws -> StartedParty) throws -> Result) throws -> Result {
    let lab = try Lab()
    var started: StartedParty?
    var deployment: (any Deployment)?
    defer {
        for process in started?.processes ?? [] { stop(process) }
        deployment?.cleanUp()
        lab.shutdown()
    }
    func start(_ party: any Deployment, _ namespaces: [Namespace]) throws -> StartedParty {
        deployment = party
        let commands = try namespaces.enumerated().map { try party.command(forNode: $0.offset, in: $0.element) }
        let start = MonotonicTime.now()
        var processes: [Process] = []
        defer { started = StartedParty(deployment: party, processes: processes, start: start) }
        for (index, (namespace, command)) in zip(namespaces, commands).enumerated() {
            processes.append(try lab.spawn(in: namespace, command, log: "node\(index).log"))
        }
        return StartedParty(deployment: party, processes: processes, start: start)
    }

    do {
        return try body(lab, start)
    } catch {
        if !(error is Interrupt) { printLogTails(of: lab) }
        throw error
    }
}

/// The last lines of every log in the lab's directory, to say why a run failed.
func printLogTails(of lab: Lab) {
    let logs = (try? FileManager.default.contentsOfDirectory(atPath: lab.directory.path))?.filter { $0.hasSuffix(".log") }.sorted() ?? []
    for log in logs {
        let text = (try? String(contentsOf: lab.directory.appendingPathComponent(log), encoding: .utf8)) ?? ""
        say("  \(log):\n" + text.split(separator: "\n").suffix(5).map { "    \($0)" }.joined(separator: "\n"))
    }
}

/// Writes a line to standard output at once (unbuffered, so that each LAB-BENCH line shows as soon
/// as it is known, through pipes too). A closed pipe (`| head`) loses the line, never the teardown.
func say(_ line: String) {
    try? FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
}

/// SIGTERM, then SIGKILL if the process is still there after 3 s.
func stop(_ process: Process) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, SIGTERM)
    let deadline = Date().addingTimeInterval(3)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
}
