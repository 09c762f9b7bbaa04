import Net

/// A route the kernel holds, as `RouteNetlink.kernelRoutes()` reads it: plain values, named the
/// way `ip route` shows them (`203.0.113.0/24 dev eth0 proto kernel scope link`).
public struct KernelRoute: Hashable, Sendable, CustomStringConvertible {
    /// The destination, host bits cleared (`0.0.0.0/0` for the default route).
    public var prefix: IPPrefix
    /// The output interface's index; 0 when the route has none (blackhole, unreachable, multipath).
    public var interfaceIndex: Int32
    /// The output interface's name; empty when the route has none.
    public var interfaceName: String
    /// Who made the route (RTPROT_*: 2 kernel, 3 boot, 4 static, 16 dhcp...).
    public var routingProtocol: UInt8
    /// RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host.
    public var scope: UInt8
    /// RTN_*: 1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable...
    public var type: UInt8
    /// The routing table: 254 main, 255 local.
    public var table: UInt32
    /// The route's metric (RTA_PRIORITY), 0 when it has none.
    public var metric: UInt32

    public static let mainTable: UInt32 = 254
    public static let localTable: UInt32 = 255
    public static let unicast: UInt8 = 1
    /// The type of a host's own address in the local table.
    public static let local: UInt8 = 2

    public init(_ prefix: IPPrefix, interfaceIndex: Int32 = 0, interfaceName: String = "", routingProtocol: UInt8 = 2,
                scope: UInt8 = 0, type: UInt8 = KernelRoute.unicast, table: UInt32 = KernelRoute.mainTable, metric: UInt32 = 0) {
        self.prefix = prefix
        self.interfaceIndex = interfaceIndex
        self.interfaceName = interfaceName
        self.routingProtocol = routingProtocol
        self.scope = scope
        self.type = type
        self.table = table
        self.metric = metric
    }

    /// Whether this is a default route (`0.0.0.0/0`, `::/0`), of whatever type.
    public var isDefault: Bool { prefix.length == 0 }

    public var description: String {
        var text = type == Self.unicast ? "" : "\(Self.typeNames[type] ?? "type \(type)") "
        text += isDefault ? "default" : "\(prefix)"
        if !interfaceName.isEmpty { text += " dev \(interfaceName)" }
        if table != Self.mainTable { text += " table \(table == Self.localTable ? "local" : "\(table)")" }
        text += " proto \(Self.protocolNames[routingProtocol] ?? "\(routingProtocol)")"
        if let scopeName = Self.scopeNames[scope] { text += " scope \(scopeName)" }
        if metric != 0 { text += " metric \(metric)" }
        return text
    }

    private static let typeNames: [UInt8: String] = [
        2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw",
    ]
    private static let protocolNames: [UInt8: String] = [
        0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 9: "ra", 11: "zebra", 12: "bird", 16: "dhcp",
        18: "keepalived", 42: "babel", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip",
    ]
    private static let scopeNames: [UInt8: String] = [200: "site", 253: "link", 254: "host"]
}
