import Foundation
import Net

/// NAT behaviours a lab site can have, each an nftables ruleset on the site's router.
public enum NATBehaviour: String, CaseIterable, Sendable, CustomStringConvertible {
    /// No NAT: the client's address is public and routed; nothing filtered.
    case open
    /// Endpoint-independent mapping and filtering (EIM + EIF).
    case fullCone = "full cone"
    /// Endpoint-independent mapping, address-dependent filtering (EIM + ADF).
    case restrictedCone = "restricted cone"
    /// Endpoint-independent mapping, address-and-port-dependent filtering (EIM + APDF).
    case portRestrictedCone = "port-restricted cone"
    /// Address-and-port-dependent mapping (APDM), random ports, APDF.
    case symmetric

    public var description: String { rawValue }

    /// The RFC 4787 pair this behaviour must show: mapping, filtering.
    public var expected: (mapping: String, filtering: String) {
        switch self {
        case .open: ("endpoint-independent", "endpoint-independent")
        case .fullCone: ("endpoint-independent", "endpoint-independent")
        case .restrictedCone: ("endpoint-independent", "address-dependent")
        case .portRestrictedCone: ("endpoint-independent", "address-and-port-dependent")
        case .symmetric: ("address-and-port-dependent", "address-and-port-dependent")
        }
    }

    /// The nftables ruleset for the site's router (WAN interface `wan`, LAN interface `lan`).
    /// Every NAT drops unsolicited new inbound packets on its WAN side, as home routers do.
    public var ruleset: String {
        let masquerade = self == .symmetric ? "masquerade random,fully-random" : "masquerade persistent"
        // Full cone and restricted cone: learn each mapping (public port → inside endpoint) and, for
        // address-dependent filtering, each remote address contacted through it, from the translated
        // outbound packets (postrouting after srcnat); let new inbound packets that pass in by DNAT.
        let learned: String
        switch self {
        case .fullCone:
            learned = "iifname \"wan\" meta l4proto udp dnat ip to udp dport map @mapped"
        case .restrictedCone:
            learned = "iifname \"wan\" meta l4proto udp udp dport . ip saddr @peers dnat ip to udp dport map @mapped"
        default:
            learned = ""
        }
        let nat = self == .open ? "" : "oifname \"wan\" \(masquerade)"
        return """
        table ip lab {
          map mapped { type inet_service : ipv4_addr . inet_service; flags dynamic, timeout; timeout 300s; }
          set peers { type inet_service . ipv4_addr; flags dynamic, timeout; timeout 300s; }
          chain prenat {
            type nat hook prerouting priority dstnat; policy accept;
            \(learned)
          }
          chain postnat {
            type nat hook postrouting priority srcnat; policy accept;
            \(nat)
          }
          chain learn {
            type filter hook postrouting priority srcnat + 10; policy accept;
            oifname "wan" meta l4proto udp ct direction original update @mapped { udp sport : ct original ip saddr . ct original proto-src }
            oifname "wan" meta l4proto udp update @peers { udp sport . ip daddr }
          }
          chain input {
            type filter hook input priority filter; policy accept;
            iifname "wan" ct state new drop
          }
          chain forward {
            type filter hook forward priority filter; policy drop;
            ct state established,related accept
            iifname "lan" accept
            ct status dnat accept
            \(self == .open ? "accept" : "")
          }
        }

        """
    }
}

/// A site: a NAT router and one client host behind it.
public struct Site: Sendable {
    public let behaviour: NATBehaviour
    public let router: Namespace
    public let client: Namespace
    /// The client's own (inside) address.
    public let clientAddress: IPv4Address
    /// The router's public (WAN) address.
    public let publicAddress: IPv4Address
}

/// A NAT lab in network namespaces (see DESIGN.md, "The lab"):
///
///     stun (192.0.2.1, 192.0.2.2) ── inet (192.0.2.254) ── 198.51.100.4k+1/30 ── site k router (198.51.100.4k+2)
///                                                                                    └─ 203.0.113.4k+1/30 ── client (203.0.113.4k+2)
///
/// Every lab has its own namespaces (`ls<pid>-<n>-…`), so labs run in parallel. `shutdown()` (also run
/// on deinit) stops what the lab started and deletes its namespaces; namespaces left by dead test
/// processes are deleted when the first lab of a process starts.
public final class Lab: @unchecked Sendable {
    /// Whether labs can be built here (root, for `ip netns`); lab suites are skipped otherwise.
    public static let isAvailable = getuid() == 0

    public static let stunPrimary = IPv4Address(192, 0, 2, 1)
    public static let stunAlternate = IPv4Address(192, 0, 2, 2)

    public let prefix: String
    public let inet: Namespace
    public let stunHost: Namespace
    public private(set) var sites: [Site] = []
    public let directory: URL
    private var namespaces: [Namespace] = []
    private var processes: [Process] = []
    private let lock = NSLock()

    private static let counter = Counter()
    private static let staleCleanup: Void = Lab.deleteStaleNamespaces()

    public init() throws {
        _ = Lab.staleCleanup
        prefix = "ls\(getpid())-\(Lab.counter.next())"
        inet = Namespace(name: "\(prefix)-inet")
        stunHost = Namespace(name: "\(prefix)-stun")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            try add(inet)
            try add(stunHost)
            try inet.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            try link(inet, "stun", stunHost, "eth0")
            try inet.run("ip", "addr", "add", "192.0.2.254/24", "dev", "stun")
            try stunHost.run("ip", "addr", "add", "\(Lab.stunPrimary)/24", "dev", "eth0")
            try stunHost.run("ip", "addr", "add", "\(Lab.stunAlternate)/24", "dev", "eth0")
            try stunHost.run("ip", "route", "add", "default", "via", "192.0.2.254")
        } catch {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    /// Adds a site whose router behaves as `behaviour`, and checks the behaviour with a probe first.
    @discardableResult
    public func addSite(_ behaviour: NATBehaviour, verify: Bool = true) throws -> Site {
        let k = sites.count + 1
        guard k < 60 else { throw CommandFailure(command: ["addSite"], status: 1, output: "too many sites") }
        let router = Namespace(name: "\(prefix)-r\(k)"), client = Namespace(name: "\(prefix)-c\(k)")
        let inetSide = IPv4Address(198, 51, 100, UInt8(4 * k + 1)), wan = IPv4Address(198, 51, 100, UInt8(4 * k + 2))
        let lan = IPv4Address(203, 0, 113, UInt8(4 * k + 1)), host = IPv4Address(203, 0, 113, UInt8(4 * k + 2))
        try add(router)
        try add(client)
        try link(inet, "s\(k)", router, "wan")
        try link(router, "lan", client, "eth0")
        try inet.run("ip", "addr", "add", "\(inetSide)/30", "dev", "s\(k)")
        try router.run("ip", "addr", "add", "\(wan)/30", "dev", "wan")
        try router.run("ip", "addr", "add", "\(lan)/30", "dev", "lan")
        try router.run("ip", "route", "add", "default", "via", "\(inetSide)")
        try router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        try client.run("ip", "addr", "add", "\(host)/30", "dev", "eth0")
        try client.run("ip", "route", "add", "default", "via", "\(lan)")
        if behaviour == .open {
            try inet.run("ip", "route", "add", "203.0.113.\(4 * k)/30", "via", "\(wan)")
        }
        try router.run(["nft", "-f", "-"], input: behaviour.ruleset)
        let site = Site(behaviour: behaviour, router: router, client: client, clientAddress: host, publicAddress: wan)
        sites.append(site)
        if verify { try NATProbe.verify(site, in: self) }
        return site
    }

    /// Starts a program in `namespace`; it is terminated by PID at shutdown. Its output goes to a
    /// log file in the lab's directory.
    @discardableResult
    public func spawn(in namespace: Namespace, _ arguments: [String], log: String) throws -> Process {
        let process = try namespace.spawn(arguments, output: directory.appendingPathComponent(log))
        lock.withLock { processes.append(process) }
        return process
    }

    /// Stops every process the lab started and deletes its namespaces. Safe to call twice.
    public func shutdown() {
        let (running, owned) = lock.withLock { () -> ([Process], [Namespace]) in
            defer { processes = []; namespaces = [] }
            return (processes, namespaces)
        }
        for process in running where process.isRunning {
            kill(process.processIdentifier, SIGTERM)
        }
        for process in running {
            let deadline = Date().addingTimeInterval(2)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        for namespace in owned.reversed() {
            _ = try? LabSupport.run(["ip", "netns", "del", namespace.name], allowFailure: true)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    private func add(_ namespace: Namespace) throws {
        try LabSupport.run(["ip", "netns", "add", namespace.name])
        lock.withLock { namespaces.append(namespace) }
        try namespace.run("ip", "link", "set", "lo", "up")
    }

    /// A veth pair from `a` (named `aName` there) to `b` (named `bName`), both up. Created inside `a`,
    /// so no name ever exists in the root namespace.
    private func link(_ a: Namespace, _ aName: String, _ b: Namespace, _ bName: String) throws {
        try a.run("ip", "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.name)
        try a.run("ip", "link", "set", "dev", aName, "up")
        try b.run("ip", "link", "set", "dev", bName, "up")
    }

    /// Deletes `ls<pid>-…` namespaces whose process is gone (a crashed earlier run).
    static func deleteStaleNamespaces() {
        guard let list = try? LabSupport.run(["ip", "netns", "list"]) else { return }
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("ls"), let dash = name.firstIndex(of: "-"),
                  let pid = Int32(name[name.index(name.startIndex, offsetBy: 2)..<dash]), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                _ = try? LabSupport.run(["ip", "netns", "del", name], allowFailure: true)
            }
        }
    }
}

final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
