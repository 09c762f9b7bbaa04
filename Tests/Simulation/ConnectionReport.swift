import Peer
import STUN
import Time

/// Many seeded connection scenarios run and summed up per cell.
public struct ConnectionReport: Sendable {
    /// Per cell: runs, how many settled direct and relayed, and the times to connect and to settle.
    public struct Cell: Sendable {
        public var runs = 0
        public var direct = 0
        public var relayed = 0
        /// Milliseconds of virtual time from the meeting to both sides in Keepalive, and to the settled path.
        public var connected: [Int64] = []
        public var settled: [Int64] = []
    }

    public var cells: [String: Cell] = [:]
    public var runs = 0
    public var failures: [ConnectionOutcome] = []
    /// Every action of the chart some run executed.
    public var executed: Set<PeerAction> = []
    public var transitions = 0
    public var elapsed: Duration = .zero

    /// Runs the scenarios of `seeds`.
    public static func run(seeds: Range<UInt64>) -> ConnectionReport {
        var report = ConnectionReport()
        let clock = SystemClock()
        let started = clock.now
        for seed in seeds { report.add(ConnectionScenario.drawn(seed: seed).run()) }
        report.elapsed = .nanoseconds(clock.now - started)
        return report
    }

    mutating func add(_ outcome: ConnectionOutcome) {
        runs += 1
        transitions += outcome.transitions
        executed.formUnion(outcome.executed)
        let name = SimulationReport.name(outcome.scenario.sites[0], outcome.scenario.sites[1])
        var cell = cells[name] ?? Cell()
        cell.runs += 1
        if outcome.paths == [.direct, .direct] { cell.direct += 1 }
        if outcome.paths == [.relayed, .relayed] { cell.relayed += 1 }
        if let connected = outcome.connected { cell.connected.append(connected / 1_000_000) }
        if let settled = outcome.converged { cell.settled.append(settled / 1_000_000) }
        cells[name] = cell
        if !outcome.violations.isEmpty { failures.append(outcome) }
        for violation in outcome.violations {
            let kind = Self.kind(of: violation)
            brokenByKind[kind, default: 0] += 1
            if firstSeedByKind[kind] == nil { firstSeedByKind[kind] = outcome.scenario.seed }
        }
    }

    /// How often each property broke, by its sentence with the numbers and the member taken out,
    /// and the first seed that broke it.
    public var brokenByKind: [String: Int] = [:]
    public var firstSeedByKind: [String: UInt64] = [:]

    static func kind(of violation: String) -> String {
        var text = Substring(violation)
        for member in ["a ", "b ", "a's ", "b's "] where text.hasPrefix(member) { text = "X" + text.dropFirst(member.count - 1) }
        var kind = "", inNumber = false
        for character in text {
            if character.isNumber || (inNumber && character == ".") {
                if !inNumber { kind.append("N") }
                inNumber = true
            } else {
                inNumber = false
                kind.append(character)
            }
        }
        return kind
    }

    /// Scenarios per second of wall-clock time.
    public var perSecond: Int { elapsed.rate(of: runs) }

    /// The chart's actions (of its rows and its states' entries) no run executed.
    public var actionsNeverExecuted: [PeerAction] {
        let chart = PeerChart.chart()
        var actions: [PeerAction] = []
        for action in chart.rows.flatMap({ $0.actions }) + chart.states.flatMap({ $0.entry }) where !actions.contains(action) {
            actions.append(action)
        }
        return actions.filter { !executed.contains($0) }
    }

    /// The per-cell table, then the totals.
    public var table: String {
        func spread(_ times: [Int64]) -> String {
            let sorted = times.sorted()
            return sorted.isEmpty ? "—" : "\(sorted[sorted.count / 2]) / \(sorted[min(sorted.count - 1, sorted.count * 99 / 100)]) ms"
        }
        var lines = ["| cell | runs | direct | relayed | median / p99 to connected | median / p99 to settled |",
                     "|---|---|---|---|---|---|"]
        for cell in ConnectionScenario.cells {
            let name = SimulationReport.name(cell[0], cell[1])
            guard let stats = cells[name] else { continue }
            lines.append("| \(name) | \(stats.runs) | \(stats.direct) | \(stats.relayed) | \(spread(stats.connected)) | \(spread(stats.settled)) |")
        }
        lines.append("\(runs) scenarios (\(transitions) transitions) in \(elapsed), \(perSecond) per second; \(failures.count) broke a property")
        for (kind, count) in brokenByKind.sorted(by: { $0.value > $1.value }) {
            lines.append("  \(count)× \(kind) (first: seed \(firstSeedByKind[kind] ?? 0))")
        }
        return lines.joined(separator: "\n")
    }
}
