import CNetlink
import Net
import CLinux

/// Links, addresses and routes over rtnetlink, built with libnl-3 core: the overlay side of a
/// WireGuard interface (for both backends) and the `wireguard` link itself for the kernel backend.
public enum RouteNetlink {
    /// The interface index of `name`; `.notFound` when there is no such link.
    public static func index(_ name: String) throws(WireGuardError) -> Int32 {
        let index = if_nametoindex(name)
        guard index != 0 else { throw WireGuardError(.notFound, "no interface named \(name)") }
        return Int32(index)
    }

    /// Creates a link of `kind` ("wireguard"); fails with `.exists` if the name is taken.
    public static func createLink(_ name: String, kind: String) throws(WireGuardError) {
        try InterfaceName.validate(name)
        let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
        let message = try newMessage(RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL)
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        try append(message, &info)
        try put(nla_put_string(message, Int32(IFLA_IFNAME), name), message)
        guard let linkInfo = nla_nest_start(message, Int32(IFLA_LINKINFO)) else { throw full(message) }
        try put(nla_put_string(message, Int32(IFLA_INFO_KIND), kind), message)
        nla_nest_end(message, linkInfo)
        do throws(WireGuardError) {
            try socket.request(message, "create \(kind) interface \(name)")
        } catch where error.kind == .exists {
            throw WireGuardError(.exists, "interface \(name) already exists (delete it with 'ip link del \(name)' or choose another name)")
        } catch where error.kind == .notFound {  // ENODEV or EOPNOTSUPP: no such link kind
            throw WireGuardError(.unavailable, "the kernel cannot create '\(kind)' links: \(error.message) (modprobe \(kind), or use wireguard-go: Backend = uapi in agent.conf, --backend uapi for 'lanrage wg')")
        }
    }

    /// Deletes the link `name`.
    public static func deleteLink(_ name: String) throws(WireGuardError) {
        let index = try index(name)
        let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
        let message = try newMessage(RTM_DELLINK, flags: 0)
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        try append(message, &info)
        try socket.request(message, "delete interface \(name)")
    }

    /// Sets the link administratively up or down.
    public static func setUp(_ name: String, _ up: Bool) throws(WireGuardError) {
        try changeLink(name, "set \(name) \(up ? "up" : "down")", change: UInt32(IFF_UP), flags: up ? UInt32(IFF_UP) : 0)
    }

    /// Sets the link's MTU.
    public static func setMTU(_ name: String, _ mtu: Int) throws(WireGuardError) {
        guard let value = UInt32(exactly: mtu) else { throw WireGuardError(.invalidInput, "MTU \(mtu) is out of range") }
        try changeLink(name, "set the MTU of \(name) to \(mtu)") { message throws(WireGuardError) in
            try put(nla_put_u32(message, Int32(IFLA_MTU), value), message)
        }
    }

    /// One RTM_NEWLINK for the existing link `name`: the `change` mask of its flags set to `flags`,
    /// then the `attributes` added.
    private static func changeLink(_ name: String, _ what: String, change: UInt32 = 0, flags: UInt32 = 0,
                                   attributes: (OpaquePointer) throws(WireGuardError) -> Void = { _ in }) throws(WireGuardError) {
        let index = try index(name)
        let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
        let message = try newMessage(RTM_NEWLINK, flags: 0)
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        info.ifi_change = change
        info.ifi_flags = flags
        try append(message, &info)
        try attributes(message)
        try socket.request(message, what)
    }

    /// Whether the link is administratively up.
    public static func isUp(_ name: String) throws(WireGuardError) -> Bool {
        try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> Bool in
            let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
            let message = try newMessage(RTM_GETLINK, flags: 0)
            var info = ifinfomsg()
            info.ifi_family = UInt8(AF_UNSPEC)
            info.ifi_index = try index(name)
            try append(message, &info)
            var flags: UInt32?
            try socket.dump(message, "read link \(name)") { header in
                guard header.pointee.nlmsg_type == UInt16(RTM_NEWLINK) else { return }
                flags = nlmsg_data(header).assumingMemoryBound(to: ifinfomsg.self).pointee.ifi_flags
            }
            guard let flags else { throw WireGuardError(.notFound, "no interface named \(name)") }
            return flags & UInt32(IFF_UP) != 0
        }
    }

    /// The addresses on `name` (IPv6 link-local ones excluded).
    public static func addresses(_ name: String) throws(WireGuardError) -> [IPPrefix] {
        try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> [IPPrefix] in
            let index = try index(name)
            let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
            let message = try newMessage(RTM_GETADDR, flags: NLM_F_DUMP)
            var info = ifaddrmsg()
            info.ifa_family = UInt8(AF_UNSPEC)
            try append(message, &info)
            var result: [IPPrefix] = []
            try socket.dump(message, "list addresses of \(name)") { header in
                guard header.pointee.nlmsg_type == UInt16(RTM_NEWADDR) else { return }
                let address = nlmsg_data(header).assumingMemoryBound(to: ifaddrmsg.self).pointee
                guard Int32(address.ifa_index) == index else { return }
                var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: Int(IFA_MAX_) + 1)
                guard nlmsg_parse(header, Int32(MemoryLayout<ifaddrmsg>.size), &table, IFA_MAX_, nil) == 0,
                      let attribute = table[Int(IFA_LOCAL)] ?? table[Int(IFA_ADDRESS)],
                      let ip = IPAddress(bytes: Attributes.bytes(attribute)),
                      let prefix = IPPrefix(ip, address.ifa_prefixlen)
                else { return }
                if case .v6(let v6) = ip, v6.bytes[0] == 0xFE, v6.bytes[1] & 0xC0 == 0x80 { return }
                result.append(prefix)
            }
            return result
        }
    }

    /// Adds `prefix` to `name` (replacing an identical address is not an error).
    public static func addAddress(_ name: String, _ prefix: IPPrefix) throws(WireGuardError) {
        try changeAddress(RTM_NEWADDR, name, prefix, flags: NLM_F_CREATE | NLM_F_REPLACE)
    }

    public static func deleteAddress(_ name: String, _ prefix: IPPrefix) throws(WireGuardError) {
        try changeAddress(RTM_DELADDR, name, prefix, flags: 0)
    }

    /// Makes the addresses of `name` exactly `wanted` (link-local IPv6 left alone); returns what changed.
    @discardableResult
    public static func setAddresses(_ name: String, _ wanted: [IPPrefix]) throws(WireGuardError) -> (added: [IPPrefix], removed: [IPPrefix]) {
        let current = try addresses(name)
        let added = wanted.filter { !current.contains($0) }
        let removed = current.filter { !wanted.contains($0) }
        for prefix in removed { try deleteAddress(name, prefix) }
        for prefix in added { try addAddress(name, prefix) }
        return (added, removed)
    }

    /// Routes `prefix` to the link `name` in the main table. Never replaces a route: fails with
    /// `.exists` when the main table routes the same prefix already (with the same metric), through
    /// whichever interface.
    public static func addRoute(_ name: String, _ prefix: IPPrefix) throws(WireGuardError) {
        do {
            try changeRoute(RTM_NEWROUTE, name, prefix, flags: NLM_F_CREATE | NLM_F_EXCL)
        } catch where error.kind == .exists {
            throw WireGuardError(.exists, """
                a route to \(prefix.network) exists already and was left as it is ('ip route show \(prefix.network)' shows it; \
                delete it first if \(name) should carry that traffic)
                """)
        }
    }

    /// Deletes the route to `prefix` through `name` that `addRoute` made (static, main table); a
    /// route to the same prefix through another interface, or of another protocol, stays.
    public static func deleteRoute(_ name: String, _ prefix: IPPrefix) throws(WireGuardError) {
        try changeRoute(RTM_DELROUTE, name, prefix, flags: 0)
    }

    /// The destinations routed to `name` in the main table (IPv6 link-local and multicast left out).
    public static func routes(_ name: String) throws(WireGuardError) -> [IPPrefix] {
        let index = try index(name)
        return try kernelRoutes().compactMap { route in
            guard route.table == KernelRoute.mainTable, route.interfaceIndex == index else { return nil }
            if case .v6(let v6) = route.prefix.address, v6.bytes[0] == 0xFF || v6.bytes[0] == 0xFE && v6.bytes[1] & 0xC0 == 0x80 { return nil }
            return route.prefix
        }
    }

    /// The kernel's IPv4 and IPv6 routes that decide where this host sends a packet: every route of
    /// the main table, and the local table's `local` routes (the host's own addresses). One dump
    /// per family (it spans as many messages as the tables need), retried when the kernel
    /// interrupts it because a table changed meanwhile. Cached IPv6 routes are left out.
    public static func kernelRoutes() throws(WireGuardError) -> [KernelRoute] {
        try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> [KernelRoute] in
            var result: [KernelRoute] = []
            for family in [AF_INET, AF_INET6] {
                let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
                let message = try newMessage(RTM_GETROUTE, flags: NLM_F_DUMP)
                var info = rtmsg()
                info.rtm_family = UInt8(family)
                try append(message, &info)
                try socket.dump(message, "list the kernel's routes") { header in
                    guard header.pointee.nlmsg_type == UInt16(RTM_NEWROUTE) else { return }
                    let route = nlmsg_data(header).assumingMemoryBound(to: rtmsg.self).pointee
                    guard route.rtm_flags & UInt32(RTM_F_CLONED) == 0 else { return }
                    var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: Int(RTA_MAX_) + 1)
                    guard nlmsg_parse(header, Int32(MemoryLayout<rtmsg>.size), &table, RTA_MAX_, nil) == 0 else { return }
                    // Tables above 255 are named in RTA_TABLE only.
                    let tableID = table[Int(RTA_TABLE.rawValue)].map { nla_get_u32($0) } ?? UInt32(route.rtm_table)
                    guard tableID == KernelRoute.mainTable || tableID == KernelRoute.localTable && route.rtm_type == KernelRoute.local else { return }
                    let bytes = table[Int(RTA_DST.rawValue)].map(Attributes.bytes) ?? [UInt8](repeating: 0, count: family == AF_INET ? 4 : 16)
                    guard let ip = IPAddress(bytes: bytes), let prefix = IPPrefix(ip, route.rtm_dst_len) else { return }
                    let index = table[Int(RTA_OIF.rawValue)].map { Int32(bitPattern: nla_get_u32($0)) } ?? 0
                    result.append(KernelRoute(prefix.network, interfaceIndex: index, interfaceName: interfaceName(index),
                                              routingProtocol: route.rtm_protocol, scope: route.rtm_scope, type: route.rtm_type,
                                              table: tableID, metric: table[Int(RTA_PRIORITY.rawValue)].map { nla_get_u32($0) } ?? 0))
                }
            }
            return result
        }
    }

    /// The name of the interface with `index`; empty for 0 or an interface gone meanwhile.
    private static func interfaceName(_ index: Int32) -> String {
        guard index > 0 else { return "" }
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(UInt32(index), &buffer) != nil else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The names of the links whose kind (IFLA_INFO_KIND) is `kind`.
    public static func links(kind: String) throws(WireGuardError) -> [String] {
        try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> [String] in
            let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
            let message = try newMessage(RTM_GETLINK, flags: NLM_F_DUMP)
            var info = ifinfomsg()
            info.ifi_family = UInt8(AF_UNSPEC)
            try append(message, &info)
            var names: [String] = []
            try socket.dump(message, "list links") { header in
                guard header.pointee.nlmsg_type == UInt16(RTM_NEWLINK) else { return }
                var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: Int(IFLA_MAX_) + 1)
                guard nlmsg_parse(header, Int32(MemoryLayout<ifinfomsg>.size), &table, IFLA_MAX_, nil) == 0,
                      let name = table[Int(IFLA_IFNAME)], let linkInfo = table[Int(IFLA_LINKINFO)]
                else { return }
                let info = Attributes.table(linkInfo, maximum: Int32(IFLA_INFO_KIND))
                guard let linkKind = info[Int(IFLA_INFO_KIND)], Attributes.string(linkKind) == kind else { return }
                names.append(Attributes.string(name))
            }
            return names
        }
    }

    // MARK: - Messages

    private static let IFLA_MAX_ = Int32(__IFLA_MAX) - 1

    private static let IFA_MAX_ = Int32(__IFA_MAX) - 1
    private static let RTA_MAX_ = Int32(__RTA_MAX.rawValue) - 1

    private static func changeAddress(_ type: Int, _ name: String, _ prefix: IPPrefix, flags: Int32) throws(WireGuardError) {
        let index = try index(name)
        let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
        let message = try newMessage(type, flags: flags)
        var info = ifaddrmsg()
        info.ifa_family = UInt8(prefix.address.family)
        info.ifa_prefixlen = prefix.length
        info.ifa_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
        info.ifa_index = UInt32(index)
        try append(message, &info)
        let bytes = prefix.address.bytes
        try put(nla_put(message, Int32(IFA_LOCAL), Int32(bytes.count), bytes), message)
        try put(nla_put(message, Int32(IFA_ADDRESS), Int32(bytes.count), bytes), message)
        try socket.request(message, "\(type == RTM_NEWADDR ? "add" : "delete") address \(prefix) \(type == RTM_NEWADDR ? "to" : "from") \(name)")
    }

    private static func changeRoute(_ type: Int, _ name: String, _ prefix: IPPrefix, flags: Int32) throws(WireGuardError) {
        let index = try index(name)
        let socket = try NetlinkSocket(protocol: NETLINK_ROUTE)
        let message = try newMessage(type, flags: flags)
        var info = rtmsg()
        info.rtm_family = UInt8(prefix.address.family)
        info.rtm_dst_len = prefix.length
        info.rtm_table = UInt8(RT_TABLE_MAIN.rawValue)
        info.rtm_protocol = UInt8(RTPROT_STATIC)
        info.rtm_scope = UInt8(RT_SCOPE_LINK.rawValue)
        info.rtm_type = UInt8(RTN_UNICAST)
        try append(message, &info)
        let network = prefix.network.address.bytes
        try put(nla_put(message, Int32(RTA_DST.rawValue), Int32(network.count), network), message)
        try put(nla_put_u32(message, Int32(RTA_OIF.rawValue), UInt32(index)), message)
        try socket.request(message, "\(type == RTM_NEWROUTE ? "add" : "delete") route \(prefix.network) dev \(name)")
    }

    static func newMessage(_ type: Int, flags: Int32) throws(WireGuardError) -> OpaquePointer {
        guard let message = nlmsg_alloc_simple(Int32(type), flags) else { throw WireGuardError(.failed, "nlmsg_alloc failed (out of memory)") }
        return message
    }

    static func append<Header: BitwiseCopyable>(_ message: OpaquePointer, _ header: inout Header) throws(WireGuardError) {
        let status = withUnsafeMutableBytes(of: &header) { nlmsg_append(message, $0.baseAddress, $0.count, Int32(NLMSG_ALIGNTO)) }
        if status < 0 { throw full(message) }
    }

    static func put(_ status: Int32, _ message: OpaquePointer) throws(WireGuardError) {
        if status < 0 { throw full(message) }
    }

    static func full(_ message: OpaquePointer) -> WireGuardError {
        nlmsg_free(message)
        return WireGuardError(.failed, "netlink message too large")
    }
}
