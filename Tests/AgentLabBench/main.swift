// `make lab-bench`, the agents: for every pair of the six site kinds (21 cells, and three pairs of
// sites with IPv6 beside their IPv4 NATs), the median time from
// both nodes started to the first ping answered across the overlay, for LANrage (and when its path is
// direct) and for Nebula with its relays on and off, side by side in fresh labs; then one node's
// memory with 1 and 50 peers, and its CPU time over an idle minute with 50 peers. Needs root.
//
// Environment: LANRAGE_LAB_RUNS (runs per cell and implementation, default 3), LANRAGE_LAB_IDLE=1
// (measure the idle minute), LANRAGE_LAB_CELLS (e.g. "full-symmetric double-restricted"; keys open,
// full, restricted, port, symmetric, double, and symmetric6, port6, double6 with IPv6), LANRAGE_LAB_IMPLS (lanrage, nebula-relays,
// nebula-direct, wireguard-go: two wireguard-go configured in advance, open ↔ open only, the floor),
// LANRAGE_BIN (the lanrage executable; default: the one built beside this one),
// LANRAGE_LAB_SMAPS (a directory: each party's first node's /proc/PID/smaps goes there).
import Foundation
import LabSupport

guard Lab.isAvailable else {
    say("the agent lab bench needs root: it builds network namespaces")
    exit(77)
}
Interrupt.install()

let environment = ProcessInfo.processInfo.environment
let runs = max(1, Int(environment["LANRAGE_LAB_RUNS"] ?? "") ?? 3)
let measureIdle = environment["LANRAGE_LAB_IDLE"] == "1"
let wantedCells = Set((environment["LANRAGE_LAB_CELLS"] ?? "").split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init))
let wantedImplementations = Set((environment["LANRAGE_LAB_IMPLS"] ?? "").split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init))

let lanrage = LANrage(binary: environment["LANRAGE_BIN"] ?? Products.lanrage)
let nebulaRelays = Nebula(relays: true), nebulaDirect = Nebula(relays: false), configured = ConfiguredWireGuard()
let implementations: [any Implementation] = [lanrage, nebulaRelays, nebulaDirect, configured].filter { implementation in
    guard wantedImplementations.isEmpty || wantedImplementations.contains(implementation.key) else { return false }
    if let reason = implementation.unavailability() {
        say("LAB-BENCH \(implementation.name): skipped, \(reason)")
        return false
    }
    return true
}

// The 21 cells, then three with IPv6 at both sites beside IPv4 NATs no punch crosses easily, then
// symmetric ↔ symmetric with one router mapping ports.
let symmetric = SiteKind.all[4], portRestricted = SiteKind.all[3], doubleNAT = SiteKind.all[5]
let dualStackCells = [(symmetric.dualStack, symmetric.dualStack), (portRestricted.dualStack, symmetric.dualStack),
                      (doubleNAT.dualStack, symmetric.dualStack)]
let mappingCells = [(symmetric.mapping(.natPMP), symmetric), (symmetric.mapping(.upnp), symmetric)]
let cells: [(SiteKind, SiteKind)] = (SiteKind.all.indices.flatMap { i in SiteKind.all[i...].map { (SiteKind.all[i], $0) } } + dualStackCells
    + mappingCells).filter { a, b in
    wantedCells.isEmpty || wantedCells.contains("\(a.key)-\(b.key)") || wantedCells.contains("\(b.key)-\(a.key)")
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

/// The median (the upper one for an even count), `nil` (never) counting as the longest.
func median(_ values: [Duration?]) -> Duration?? {
    guard !values.isEmpty else { return .none }
    let sorted = values.sorted { ($0 ?? .seconds(Int64.max)) < ($1 ?? .seconds(Int64.max)) }
    return .some(sorted[sorted.count / 2])
}

/// "812 ms", `never` for nil, "—" without runs.
func text(_ value: Duration??, never: String = "never") -> String {
    switch value {
    case .none: "—"
    case .some(.none): never
    case .some(.some(let duration)): "\(Int(milliseconds(duration).rounded())) ms"
    }
}

/// CPU time to the hundredth: "0.19 s".
func seconds(_ value: Double) -> String { "\((value * 100).rounded() / 100) s" }

func mebibytes(_ kib: Int?) -> String {
    guard let kib else { return "—" }
    return "\(Double(kib * 10 / 1024) / 10) MiB"
}

// The cells: every run of a cell tries each implementation in turn, each in a fresh lab.
var results: [String: [String: [CellRun]]] = [:]
cellLoop: for (a, b) in cells {
    let cell = "\(a) ↔ \(b)"
    for run in 1...runs {
        for implementation in implementations where implementation.supports(a, b) {
            do {
                results[cell, default: [:]][implementation.key, default: []].append(try runCell(a, b, implementation))
            } catch Interrupt.interrupted {
                break cellLoop
            } catch {
                say("LAB-BENCH \(cell) | \(implementation.name) | run \(run) failed: \(error)")
            }
        }
    }
    for implementation in implementations where implementation.supports(a, b) {
        let cellRuns = results[cell]?[implementation.key] ?? []
        var line = "LAB-BENCH \(cell) | \(implementation.name) | first ping \(text(median(cellRuns.map(\.firstPing)))) "
            + "(\(cellRuns.map { text(.some($0.firstPing)) }.joined(separator: ", ")))"
        if implementation.key == lanrage.key {
            line += " | direct \(text(median(cellRuns.map(\.direct)), never: "relay")) (\(cellRuns.map { text(.some($0.direct), never: "relay") }.joined(separator: ", ")))"
        }
        say(line)
    }
}

// Memory and idle CPU: one node with 1 peer and with 50, for LANrage and Nebula (relays on).
var footprints: [String: [Int: PartyFootprint]] = [:]
memoryLoop: for implementation in implementations where ![nebulaDirect.key, configured.key].contains(implementation.key) && !Interrupt.requested {
    for peers in [1, 50] {
        do {
            let footprint = try measureParty(implementation, peers: peers, idle: measureIdle && peers == 50)
            footprints[implementation.key, default: [:]][peers] = footprint
            var line = "LAB-BENCH memory | \(implementation.name) | \(peers) peer\(peers == 1 ? "" : "s") | all answered after "
                + "\(text(.some(.some(footprint.connected)))) | VmRSS \(mebibytes(footprint.residentKiB))"
            if let dataPlane = footprint.dataPlaneKiB { line += " (wireguard-go \(mebibytes(dataPlane)))" }
            if let cpu = footprint.idleCPUSeconds {
                line += " | idle \(Int(idleWindow.components.seconds)) s: \(seconds(cpu)) CPU, VmRSS after \(mebibytes(footprint.residentAfterIdleKiB))"
            }
            say(line)
        } catch Interrupt.interrupted {
            break memoryLoop
        } catch {
            say("LAB-BENCH memory | \(implementation.name) | \(peers) peer\(peers == 1 ? "" : "s") | failed: \(error)")
        }
    }
}

// The table for BENCHMARKS.md.
func ratio(_ numerator: Duration??, _ denominator: Duration??, target: Double) -> String {
    guard case .some(.some(let n)) = numerator, case .some(.some(let d)) = denominator else { return "—" }
    let value = milliseconds(n) / milliseconds(d)
    return "\((value * 100).rounded() / 100) \(value <= target ? "✓" : "✗")"
}

/// LANrage's time to the direct path against Nebula's without relays, or who got there at all.
func directVerdict(_ direct: Duration??, _ relaysOff: Duration??) -> String {
    switch (direct, relaysOff) {
    case (.some(.some), .some(.none)): "direct, Nebula never ✓"
    case (.some(.none), .some(.none)): "relay, Nebula never"
    case (.some(.none), .some(.some)): "relay ✗"
    default: ratio(direct, relaysOff, target: 0.5)
    }
}

say("""

    | pair | LANrage first ping | LANrage direct | Nebula relays on | Nebula relays off | LANrage / Nebula on, first ping (≤ 1) | LANrage direct / Nebula off (≤ 0.5) | wireguard-go configured in advance / Nebula off |
    |---|---|---|---|---|---|---|---|
    """)
for (a, b) in cells {
    let cell = "\(a) ↔ \(b)"
    let lanrageRuns = results[cell]?[lanrage.key] ?? []
    let first = median(lanrageRuns.map(\.firstPing)), direct = median(lanrageRuns.map(\.direct))
    let relaysOn = median((results[cell]?[nebulaRelays.key] ?? []).map(\.firstPing))
    let relaysOff = median((results[cell]?[nebulaDirect.key] ?? []).map(\.firstPing))
    let floor = results[cell]?[configured.key].map { median($0.map(\.firstPing)) } ?? .none
    let floorText = floor == nil ? "—" : "\(text(floor)) (\(ratio(floor, relaysOff, target: 0.5)))"
    say("| \(cell) | \(text(first)) | \(text(direct, never: "relay")) | \(text(relaysOn)) | \(text(relaysOff)) | "
        + "\(ratio(first, relaysOn, target: 1)) | \(directVerdict(direct, relaysOff)) | \(floorText) |")
}
say("""

    | implementation | VmRSS, 1 peer | VmRSS, 50 peers | CPU over \(Int(idleWindow.components.seconds)) s idle, 50 peers |
    |---|---|---|---|
    """)
for implementation in implementations where footprints[implementation.key] != nil {
    let one = footprints[implementation.key]?[1], fifty = footprints[implementation.key]?[50]
    let dataPlane = fifty?.dataPlaneKiB.map { " (+ wireguard-go \(mebibytes($0)))" } ?? ""
    say("| \(implementation.name) | \(mebibytes(one?.residentKiB)) | \(mebibytes(fifty?.residentKiB))\(dataPlane) | "
        + "\(fifty?.idleCPUSeconds.map(seconds) ?? "—") |")
}
