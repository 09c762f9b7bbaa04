import STUN
import Time

/// Many seeded scenarios run and summed up per cell of the matrix.
public struct SimulationReport: Sendable {
    /// Per cell (the two sites' effective types, in order): runs, direct, rounds and times.
    public struct Cell: Sendable {
        public var runs = 0
        public var direct = 0
        /// Direct runs by the round that connected (index 0: round 1).
        public var byRound: [Int] = []
        /// Times to direct, in milliseconds of virtual time.
        public var times: [Int64] = []
        /// Detections that named a stricter NAT than the member is behind (loss), or failed.
        public var detectionOff = 0
        public var throughFan = 0
    }

    public var cells: [String: Cell] = [:]
    public var runs = 0
    /// Runs that broke a property.
    public var failures: [PunchOutcome] = []
    /// Wall-clock time the runs took.
    public var elapsed: Duration = .zero

    /// Runs the scenarios of `seeds`.
    public static func run(seeds: Range<UInt64>) -> SimulationReport {
        var report = SimulationReport()
        let clock = SystemClock()
        let started = clock.now
        for seed in seeds { report.add(PunchScenario.drawn(seed: seed).run()) }
        report.elapsed = .nanoseconds(clock.now - started)
        return report
    }

    mutating func add(_ outcome: PunchOutcome) {
        runs += 1
        let sites = outcome.scenario.sites
        let name = outcome.scenario.sameSite ? Self.sameSite(sites[0].effective) : Self.name(sites[0].effective, sites[1].effective)
        var cell = cells[name] ?? Cell()
        cell.runs += 1
        for (index, site) in sites.enumerated() where outcome.detected[index] != site.effective { cell.detectionOff += 1 }
        if outcome.direct, let time = outcome.timeToDirect {
            cell.direct += 1
            while cell.byRound.count < outcome.rounds { cell.byRound.append(0) }
            cell.byRound[outcome.rounds - 1] += 1
            cell.times.append(time / 1_000_000)
            if outcome.throughFan { cell.throughFan += 1 }
        }
        cells[name] = cell
        if !outcome.violations.isEmpty { failures.append(outcome) }
    }

    static func name(_ a: NATType, _ b: NATType) -> String { "\(a) ↔ \(b)" }
    static func sameSite(_ nat: NATType) -> String { "both behind one \(nat)" }

    /// Scenarios per second of wall-clock time.
    public var perSecond: Int { elapsed.rate(of: runs) }

    /// The per-cell table, then the totals.
    public var table: String {
        var lines = ["| cell | runs | direct | by round 1/2/3/4 | median / p99 to direct | detections off | through fan |",
                     "|---|---|---|---|---|---|---|"]
        let names = PunchScenario.types.flatMap { a in PunchScenario.types.map { Self.name(a, $0) } }
            + PunchScenario.types.map { Self.sameSite($0) }
        for name in names {
            guard let cell = cells[name] else { continue }
            let sorted = cell.times.sorted()
            let times = sorted.isEmpty ? "—" : "\(sorted[sorted.count / 2]) / \(sorted[min(sorted.count - 1, sorted.count * 99 / 100)]) ms"
            let rounds = (0..<4).map { $0 < cell.byRound.count ? "\(cell.byRound[$0])" : "0" }.joined(separator: "/")
            lines.append("| \(name) | \(cell.runs) | \(cell.direct) | \(rounds) | \(times) | \(cell.detectionOff) | \(cell.throughFan) |")
        }
        lines.append("\(runs) scenarios in \(elapsed), \(perSecond) per second; \(failures.count) broke a property")
        return lines.joined(separator: "\n")
    }
}

extension Duration {
    /// How many of `count` fall in a second of this duration (0 for none).
    func rate(of count: Int) -> Int {
        let seconds = Double(components.seconds) + Double(components.attoseconds) / 1e18
        return seconds > 0 ? Int(Double(count) / seconds) : 0
    }
}
