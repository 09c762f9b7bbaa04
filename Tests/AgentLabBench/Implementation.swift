import Foundation
import LabSupport
import Net

/// An overlay under test: it brings up the servers a party needs in a lab, then one node per namespace.
protocol Implementation {
    /// Its name in the output, e.g. "nebula (relays on)".
    var name: String { get }
    /// Its key for `LANRAGE_LAB_IMPLS`.
    var key: String { get }
    /// Why it cannot run here, or nil when it can.
    func unavailability() -> String?
    /// Whether it runs in the cell of sites `a` and `b` (the reference configured in advance needs open sites).
    func supports(_ a: SiteKind, _ b: SiteKind) -> Bool
    /// Starts the servers a party of `size` nodes needs in `lab`.
    func deploy(in lab: Lab, size: Int) throws -> any Deployment
    /// Whether its nodes ask the gateway to map a port (PCP, NAT-PMP, UPnP-IGD).
    var mapsPorts: Bool { get }
}

extension Implementation {
    func supports(_ a: SiteKind, _ b: SiteKind) -> Bool { true }
    var mapsPorts: Bool { false }
}

/// One party of an implementation in one lab.
protocol Deployment {
    /// Node `index`'s address on the overlay.
    func overlayAddress(_ index: Int) -> IPv4Address
    /// Writes node `index`'s configuration for `namespace` and returns the command that starts it,
    /// so that starting a node is one spawn.
    func command(forNode index: Int, in namespace: Namespace) throws -> [String]
    /// Whether node `index` reaches its only peer on the direct path now; nil where the implementation does not say.
    func isDirect(node index: Int) throws -> Bool?
    /// The process that carries node `index`'s packets when it is not the node's own (wireguard-go), for memory figures.
    func dataPlaneProcess(node index: Int) -> pid_t?
    /// Removes what would outlive the stopped nodes (LANrage: its WireGuard links, whose wireguard-go
    /// would outlive the namespace). Runs after the nodes are stopped, before the lab is shut down.
    func cleanUp()
}

/// Deletes each node's WireGuard link (in its namespace) and waits, 3 s at most, until its
/// wireguard-go has exited and removed its UAPI socket: a wireguard-go would outlive the namespace.
func removeWireGuardLinks(_ interfaces: [(Namespace, String)]) {
    for (namespace, interface) in interfaces {
        _ = try? namespace.run(["ip", "link", "del", interface], allowFailure: true)
    }
    let deadline = Date().addingTimeInterval(3)
    while interfaces.contains(where: { FileManager.default.fileExists(atPath: "/var/run/wireguard/\($0.1).sock") }), Date() < deadline {
        usleep(20_000)
    }
}

/// A run that could not be measured, and why.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
}

/// SIGINT and SIGTERM stop the bench at the next step, so that it still tears its lab down; SIGPIPE
/// (output piped into `head`) is ignored for the same reason.
enum Interrupt: Error {
    case interrupted
    nonisolated(unsafe) static var requested = false

    static func install() {
        signal(SIGINT) { _ in Interrupt.requested = true }
        signal(SIGTERM) { _ in Interrupt.requested = true }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Throws once an interrupt has come.
    static func check() throws { if requested { throw Interrupt.interrupted } }
}

/// What `/proc` says about a process.
enum ProcessFigures {
    /// Resident memory (VmRSS) in KiB.
    static func residentKiB(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    /// CPU time used so far (user + system), in seconds.
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
