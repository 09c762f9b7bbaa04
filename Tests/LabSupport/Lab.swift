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

    /// What a client behind a router that behaves as `self`, itself behind one that behaves as
    /// `outer`, sees: the stricter of the two (the mapping is endpoint-independent only if both
    /// are; a packet gets in only if both filters let it through).
    public func behind(_ outer: NATBehaviour) -> NATBehaviour {
        let all = NATBehaviour.allCases
        return all[max(all.firstIndex(of: self)!, all.firstIndex(of: outer)!)]
    }

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

    /// The nftables ruleset for the site's router (WAN interface `wan`, LAN interfaces `lan`, `lan2`…).
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
            iifname "lan*" accept
            ct status dnat accept
            \(self == .open ? "accept" : "")
          }
        }

        """
    }
}

/// A site: a NAT router and one client host behind it — or, for a double NAT, a client behind an
/// inner NAT router behind the site's router.
public struct Site: Sendable {
    /// The behaviour the client sees: for a double NAT, the effective one of both routers.
    public let behaviour: NATBehaviour
    /// The public-facing router (WAN on the internet side).
    public let router: Namespace
    /// For a double NAT, the router between `router` and the client; nil for a single NAT.
    public let innerRouter: Namespace?
    public let client: Namespace
    /// The client's own (inside) address.
    public let clientAddress: IPv4Address
    /// The router's public (WAN) address when the site was added (`Lab.changePublicAddress` moves it).
    public let publicAddress: IPv4Address
    /// The site's number k in the lab: its links and addresses are named after it.
    let number: Int

    /// Whether the client sits behind two NAT routers.
    public var isDoubleNAT: Bool { innerRouter != nil }
}

/// A NAT lab in network namespaces (see docs/TESTING.md, "The NAT lab"):
///
///     stun (192.0.2.1, 192.0.2.2, 2001:db8::1) ── inet (192.0.2.254) ── 198.51.100.4k+1/30 ── site k router (198.51.100.4k+2)
///                                                                                    └─ 203.0.113.4k+1/30 ── client (203.0.113.4k+2)
///
/// A double-NAT site j (j < 4) puts an inner router at 203.0.113.4k+2, with the client behind it on
/// 198.51.100.240+4j/30. Extra internet hosts (`addHost`) hang off inet with /32 routes; a site's
/// router moved by `changePublicAddress` takes a /32 from 198.51.100.224/28.
///
/// Every lab has its own namespaces (`ls<pid>-<n>-…`), so labs run in parallel. `shutdown()` (also run
/// on deinit) stops what the lab started and deletes its namespaces; namespaces left by dead test
/// processes are deleted when the first lab of a process starts.
public final class Lab: @unchecked Sendable {
    /// Whether labs can be built here (root, for `ip netns`); lab suites are skipped otherwise.
    public static let isAvailable = getuid() == 0

    public static let stunPrimary = IPv4Address(192, 0, 2, 1)
    public static let stunAlternate = IPv4Address(192, 0, 2, 2)
    /// The STUN host's IPv6 address (its link to inet is 2001:db8::/64, inet at 2001:db8::254).
    public static let stunPrimary6 = IPv6Address("2001:db8::1")!

    public let prefix: String
    public let inet: Namespace
    public let stunHost: Namespace
    public private(set) var sites: [Site] = []
    public let directory: URL
    private var namespaces: [Namespace] = []
    private var processes: [Process] = []
    private var shutdownHooks: [() -> Void] = []
    private var isShutDown = false
    /// How many addresses of 198.51.100.224/28 `changePublicAddress` has handed out.
    private var movedAddresses = 0
    /// How many hosts `addClient` added.
    private var extraClients = 0
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
            try inet.run("ip", "-6", "addr", "add", "2001:db8::254/64", "dev", "stun", "nodad")
            try stunHost.run("ip", "-6", "addr", "add", "\(Lab.stunPrimary6)/64", "dev", "eth0", "nodad")
            try stunHost.run("ip", "-6", "route", "add", "default", "via", "2001:db8::254")
        } catch {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    /// Adds a site whose router behaves as `behaviour`, and checks the behaviour with a probe first.
    @discardableResult
    public func addSite(_ behaviour: NATBehaviour, verify: Bool = true) throws -> Site {
        try addSite(behaviour, behind: nil, verify: verify)
    }

    /// Adds a site whose client sees `behaviour`; with `outer`, a double NAT: the client sits behind an
    /// inner router that behaves as `behaviour`, itself behind the site's router that behaves as
    /// `outer` (neither may be open; at most 4 per lab). The probe checks the effective behaviour
    /// (`behaviour.behind(outer)`) before the site is returned.
    @discardableResult
    public func addSite(_ behaviour: NATBehaviour, behind outer: NATBehaviour?, verify: Bool = true) throws -> Site {
        let k = sites.count + 1, j = sites.filter(\.isDoubleNAT).count
        // 198.51.100.224/27 is kept for moved public addresses and inner links.
        guard k <= 55 else { throw labError("addSite", "at most 55 sites per lab") }
        if outer != nil {
            guard j < 4 else { throw labError("addSite", "at most 4 double-NAT sites per lab") }
            guard behaviour != .open, outer != .open else { throw labError("addSite", "both routers of a double NAT translate") }
        }
        let router = Namespace(name: "\(prefix)-r\(k)"), client = Namespace(name: "\(prefix)-c\(k)")
        let innerRouter = outer == nil ? nil : Namespace(name: "\(prefix)-n\(k)")
        let inetSide = IPv4Address(198, 51, 100, UInt8(4 * k + 1)), wan = IPv4Address(198, 51, 100, UInt8(4 * k + 2))
        let lan = IPv4Address(203, 0, 113, UInt8(4 * k + 1)), lanHost = IPv4Address(203, 0, 113, UInt8(4 * k + 2))
        try add(router)
        try add(client)
        try link(inet, "s\(k)", router, "wan")
        try inet.run("ip", "addr", "add", "\(inetSide)/30", "dev", "s\(k)")
        try router.run("ip", "addr", "add", "\(wan)/30", "dev", "wan")
        try router.run("ip", "route", "add", "default", "via", "\(inetSide)")
        try router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        try router.run(["nft", "-f", "-"], input: (outer ?? behaviour).ruleset)
        // The client's gateway and address: the site router's LAN, or the inner router's.
        var gateway = lan, host = lanHost
        if let innerRouter {
            gateway = IPv4Address(198, 51, 100, UInt8(240 + 4 * j + 1))
            host = IPv4Address(198, 51, 100, UInt8(240 + 4 * j + 2))
            try add(innerRouter)
            try link(router, "lan", innerRouter, "wan")
            try link(innerRouter, "lan", client, "eth0")
            try router.run("ip", "addr", "add", "\(lan)/30", "dev", "lan")
            try innerRouter.run("ip", "addr", "add", "\(lanHost)/30", "dev", "wan")
            try innerRouter.run("ip", "addr", "add", "\(gateway)/30", "dev", "lan")
            try innerRouter.run("ip", "route", "add", "default", "via", "\(lan)")
            try innerRouter.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            try innerRouter.run(["nft", "-f", "-"], input: behaviour.ruleset)
        } else {
            try link(router, "lan", client, "eth0")
            try router.run("ip", "addr", "add", "\(lan)/30", "dev", "lan")
        }
        try client.run("ip", "addr", "add", "\(host)/30", "dev", "eth0")
        try client.run("ip", "route", "add", "default", "via", "\(gateway)")
        if behaviour == .open {
            try inet.run("ip", "route", "add", "203.0.113.\(4 * k)/30", "via", "\(wan)")
        }
        let site = Site(behaviour: outer.map(behaviour.behind) ?? behaviour, router: router, innerRouter: innerRouter,
                        client: client, clientAddress: host, publicAddress: wan, number: k)
        sites.append(site)
        if verify { try NATProbe.verify(site, in: self) }
        return site
    }

    /// Adds a second host behind `site`'s router (not a double NAT's): on a link of its own from
    /// 203.0.113.224/27 (`lanN` on the router), routed to the first client's LAN without NAT, and
    /// behind the same NAT toward the internet — two members in one house. At most 8 per lab.
    public func addClient(to site: Site) throws -> (namespace: Namespace, address: IPv4Address) {
        guard !site.isDoubleNAT, site.behaviour != .open else { throw labError("addClient", "a single translating NAT only") }
        let m = extraClients
        guard m < 8 else { throw labError("addClient", "at most 8 extra clients per lab") }
        extraClients += 1
        let gateway = IPv4Address(203, 0, 113, UInt8(224 + 4 * m + 1)), host = IPv4Address(203, 0, 113, UInt8(224 + 4 * m + 2))
        let client = Namespace(name: "\(prefix)-x\(m)")
        try add(client)
        try link(site.router, "lan\(m + 2)", client, "eth0")
        try site.router.run("ip", "addr", "add", "\(gateway)/30", "dev", "lan\(m + 2)")
        try client.run("ip", "addr", "add", "\(host)/30", "dev", "eth0")
        try client.run("ip", "route", "add", "default", "via", "\(gateway)")
        return (client, host)
    }

    /// Gives `site` IPv6 beside its IPv4 NAT, as most home lines have: the home router forwards
    /// 2001:db8:2:k::/64 without translation behind a stateful filter (inbound only what answers
    /// outbound traffic: `ct state established,related`), the client gets 2001:db8:2:k::2, and inet
    /// routes the prefix over 2001:db8:1:k::/64. A double-NAT site is a carrier-grade NAT'd IPv4
    /// line with native IPv6: the carrier's router forwards IPv6 unfiltered over 2001:db8:3:k::/64
    /// to the home (inner) router, which filters. Returns the client's IPv6 address.
    @discardableResult
    public func enableIPv6(on site: Site) throws -> IPv6Address {
        let k = site.number
        let inetSide = "2001:db8:1:\(k)::1", wan = "2001:db8:1:\(k)::2", lan = "2001:db8:2:\(k)::1", client = "2001:db8:2:\(k)::2"
        try inet.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        try inet.run("ip", "-6", "addr", "add", "\(inetSide)/64", "dev", "s\(k)", "nodad")
        try site.router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        try site.router.run("ip", "-6", "addr", "add", "\(wan)/64", "dev", "wan", "nodad")
        try site.router.run("ip", "-6", "route", "add", "default", "via", inetSide)
        try inet.run("ip", "-6", "route", "add", "2001:db8:2:\(k)::/64", "via", wan)
        var home = site.router
        if let inner = site.innerRouter {
            let carrierSide = "2001:db8:3:\(k)::1", innerWAN = "2001:db8:3:\(k)::2"
            try site.router.run("ip", "-6", "addr", "add", "\(carrierSide)/64", "dev", "lan", "nodad")
            try site.router.run("ip", "-6", "route", "add", "2001:db8:2:\(k)::/64", "via", innerWAN)
            try inner.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            try inner.run("ip", "-6", "addr", "add", "\(innerWAN)/64", "dev", "wan", "nodad")
            try inner.run("ip", "-6", "route", "add", "default", "via", carrierSide)
            home = inner
        }
        try home.run("ip", "-6", "addr", "add", "\(lan)/64", "dev", "lan", "nodad")
        try home.run(["nft", "-f", "-"], input: Lab.ipv6Firewall)
        try site.client.run("ip", "-6", "addr", "add", "\(client)/64", "dev", "eth0", "nodad")
        try site.client.run("ip", "-6", "route", "add", "default", "via", lan)
        return IPv6Address(client)!
    }

    /// A home router's IPv6 filter: nothing translated; from the WAN side only what answers
    /// traffic from inside (and ICMPv6, which neighbour discovery and path MTU need).
    static let ipv6Firewall = """
    table ip6 lab6 {
      chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" meta l4proto udp ct state new drop
      }
      chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        iifname "lan*" accept
      }
    }

    """

    /// Runs miniupnpd (Debian's `miniupnpd-nftables`) on `site`'s router, answering on the LAN
    /// NAT-PMP and PCP (`natPMP`, port 5351) and UPnP-IGD (`upnp`: SSDP on port 1900, HTTP on a port
    /// of its choice): mappings for the LAN's own addresses (`secure_mode`), DNAT and forward rules
    /// in a table of its own. miniupnpd refuses to map on a reserved public address — the lab's are
    /// documentation prefixes — unless STUN shows the address reachable (`ext_perform_stun`, against
    /// the lab's STUN server): so the router stops translating its own traffic (only the LAN's, as
    /// real routers do) and lets the STUN host's answers in. Returns once it listens on the ports of
    /// its protocols; stopped (its rules deleted) at shutdown.
    public func runMiniUPnPd(on site: Site, natPMP: Bool = true, upnp: Bool = false) throws {
        guard !site.isDoubleNAT, site.behaviour != .open else { throw labError("runMiniUPnPd", "a single translating NAT only") }
        let masquerade = site.behaviour == .symmetric ? "masquerade random,fully-random" : "masquerade persistent"
        try site.router.run("nft", "flush", "chain", "ip", "lab", "postnat")
        try site.router.run("nft", "add", "rule", "ip", "lab", "postnat", "ip", "saddr", "203.0.113.0/24", "oifname", "wan", masquerade)
        try site.router.run("nft", "insert", "rule", "ip", "lab", "input", "iifname", "wan", "ip", "saddr", "192.0.2.0/24", "udp", "sport", "{ 3478, 3479 }", "accept")
        try site.router.run(["nft", "-f", "-"], input: """
            table inet miniupnpd {
              chain forward { type filter hook forward priority filter; policy accept; jump miniupnpd; }
              chain miniupnpd { }
              chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
              chain prerouting_miniupnpd { }
              chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; }
              chain postrouting_miniupnpd { }
            }

            """)
        let configuration = directory.appendingPathComponent("miniupnpd-\(site.number).conf")
        try """
            ext_ifname=wan
            listening_ip=lan
            enable_natpmp=\(natPMP ? "yes" : "no")
            enable_upnp=\(upnp ? "yes" : "no")
            ext_perform_stun=yes
            ext_stun_host=\(Lab.stunPrimary)
            ext_stun_port=3478
            secure_mode=yes
            upnp_table_name=miniupnpd
            upnp_nat_table_name=miniupnpd
            upnp_forward_chain=miniupnpd
            upnp_nat_chain=prerouting_miniupnpd
            upnp_nat_postrouting_chain=postrouting_miniupnpd
            allow 1024-65535 203.0.113.0/24 1024-65535
            deny 0-65535 0.0.0.0/0 0-65535

            """.write(to: configuration, atomically: true, encoding: .utf8)
        try spawn(in: site.router, ["/usr/sbin/miniupnpd", "-d", "-f", configuration.path, "-P", directory.appendingPathComponent("miniupnpd-\(site.number).pid").path],
                  log: "miniupnpd-\(site.number).log")
        // It answers once its STUN test is done (a few seconds).
        let deadline = Date().addingTimeInterval(20)
        let ports = (natPMP ? [":5351 "] : []) + (upnp ? [":1900 "] : [])
        while case let listening = try site.router.run("ss", "-Hunl"), !ports.allSatisfy({ listening.contains($0) }) {
            guard Date() < deadline else { throw labError("runMiniUPnPd", "miniupnpd does not listen on \(ports) after 20 s") }
            usleep(50_000)
        }
    }

    /// The DNAT rules miniupnpd holds on `site`'s router (one line each).
    public func miniUPnPdMappings(on site: Site) throws -> [String] {
        try site.router.run("nft", "list", "chain", "inet", "miniupnpd", "prerouting_miniupnpd")
            .split(separator: "\n").filter { $0.contains("dnat") }.map(String.init)
    }

    /// Takes IPv4 away from `site`'s client (its addresses and default route): with
    /// ``enableIPv6(on:)`` first, a member on an IPv6-only line.
    public func removeIPv4(from site: Site) throws {
        try site.client.run("ip", "-4", "route", "flush", "table", "main")
        try site.client.run("ip", "-4", "addr", "flush", "dev", "eth0")
    }

    /// Makes `site`'s router hairpin: a datagram from its LAN to its own public address and a
    /// mapped port goes to the inside endpoint of that mapping, from the router (as home routers
    /// with NAT loopback do).
    public func enableHairpin(on site: Site) throws {
        guard !site.isDoubleNAT, site.behaviour != .open else { throw labError("enableHairpin", "a single translating NAT only") }
        try site.router.run("nft", "add", "rule", "ip", "lab", "prenat", "iifname", "lan*", "ip", "daddr", "\(site.publicAddress)",
                            "meta", "l4proto", "udp", "dnat", "ip", "to", "udp", "dport", "map", "@mapped")
        try site.router.run("nft", "add", "rule", "ip", "lab", "postnat", "oifname", "lan*", "ct", "status", "dnat", "masquerade")
    }

    /// Adds a server host on the internet (a relay, say) at `address` in 192.0.2.0/24 — not the STUN
    /// host's .1 and .2 nor inet's .254. Its namespace is `<prefix>-<name>`; inet reaches it over
    /// its own link `h<last octet>` with a /32 route, and so does the STUN host, through inet. With
    /// `ipv6`, it also has ``hostIPv6(_:)`` of its address (a /128 routed the same way).
    @discardableResult
    public func addHost(_ name: String, address: IPv4Address, ipv6: Bool = false) throws -> Namespace {
        let (a, b, c, d) = address.octets
        guard a == 192, b == 0, c == 2, ![0, 1, 2, 254, 255].contains(d) else {
            throw labError("addHost", "\(address) is not a free host address in 192.0.2.0/24")
        }
        let host = Namespace(name: "\(prefix)-\(name)")
        try add(host)
        try link(inet, "h\(d)", host, "eth0")
        try inet.run("ip", "route", "add", "\(address)/32", "dev", "h\(d)")
        try host.run("ip", "addr", "add", "\(address)/32", "dev", "eth0")
        try host.run("ip", "route", "add", "192.0.2.254", "dev", "eth0")
        try host.run("ip", "route", "add", "default", "via", "192.0.2.254")
        // The STUN host's 192.0.2.0/24 is on its own link: send this address through inet instead.
        try stunHost.run("ip", "route", "add", "\(address)/32", "via", "192.0.2.254")
        if ipv6 {
            let v6 = Lab.hostIPv6(address)
            try inet.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            try inet.run("ip", "-6", "addr", "add", "fe80::1/64", "dev", "h\(d)", "nodad")
            try inet.run("ip", "-6", "route", "add", "\(v6)/128", "dev", "h\(d)")
            try host.run("ip", "-6", "addr", "add", "\(v6)/128", "dev", "eth0", "nodad")
            try host.run("ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
        }
        return host
    }

    /// The IPv6 address of the internet host at `address` (192.0.2.d): 2001:db8:ffff::d.
    public static func hostIPv6(_ address: IPv4Address) -> IPv6Address {
        IPv6Address("2001:db8:ffff::\(String(address.octets.3, radix: 16))")!
    }

    /// Moves the public address of `site`'s router to a new one from 198.51.100.224/28 (a /32) and
    /// returns it: from then on the router masquerades with it (the kernel drops the NAT mappings of
    /// the old address). `site.publicAddress` keeps the first address. Not for open sites.
    public func changePublicAddress(of site: Site) throws -> IPv4Address {
        guard site.behaviour != .open else { throw labError("changePublicAddress", "an open site's client address is its public one") }
        guard movedAddresses < 16 else { throw labError("changePublicAddress", "198.51.100.224/28 is used up") }
        let address = IPv4Address(198, 51, 100, UInt8(224 + movedAddresses))
        movedAddresses += 1
        let k = site.number, inetSide = IPv4Address(198, 51, 100, UInt8(4 * k + 1))
        try inet.run("ip", "route", "add", "\(address)/32", "dev", "s\(k)")
        try site.router.run("ip", "addr", "flush", "dev", "wan")
        try site.router.run("ip", "addr", "add", "\(address)/32", "dev", "wan")
        try site.router.run("ip", "route", "add", "\(inetSide)", "dev", "wan")
        try site.router.run("ip", "route", "add", "default", "via", "\(inetSide)")
        return address
    }

    /// Forgets every connection `site`'s public router tracks (`conntrack -F`), as a router reboot
    /// would: its NAT mappings and open filters are gone.
    public func flushConntrack(of site: Site) throws {
        try site.router.run(["conntrack", "-F"])
    }

    /// Makes programs started in `namespace` (by `ip netns exec`) ask the name server at `address`:
    /// its own `/etc/resolv.conf`, from `/etc/netns/NAME/`, removed at shutdown.
    public func useNameServer(_ address: IPAddress, in namespace: Namespace) throws {
        let directory = Lab.etcDirectory(of: namespace.name)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "nameserver \(address)\noptions timeout:1 attempts:2\n".write(toFile: directory + "/resolv.conf", atomically: true, encoding: .utf8)
    }

    /// Where `ip netns exec` finds the files it puts over `/etc` for namespace `name`.
    static func etcDirectory(of name: String) -> String { "/etc/netns/\(name)" }

    /// Starts a program in `namespace`; it is terminated by PID at shutdown. Its output goes to a
    /// log file in the lab's directory.
    @discardableResult
    public func spawn(in namespace: Namespace, _ arguments: [String], log: String) throws -> Process {
        let process = try namespace.spawn(arguments, output: directory.appendingPathComponent(log))
        lock.withLock { processes.append(process) }
        return process
    }

    /// Stops every process the lab started and deletes its namespaces. Safe to call twice.
    /// Runs `hook` at shutdown, after the spawned processes are stopped and before the namespaces
    /// go: for processes the lab's programs started themselves (an agent's wireguard-go).
    public func atShutdown(_ hook: @escaping () -> Void) {
        lock.withLock { shutdownHooks.append(hook) }
    }

    /// The PID of the wireguard-go serving `interface`, as LANrage starts it (in the foreground).
    public static func wireguardGo(serving interface: String) -> pid_t? {
        processID(running: ["wireguard-go", "-f", interface])
    }

    /// The PID of the process whose command line is exactly `arguments` (the program matched by
    /// the last component of its path), if one runs.
    public static func processID(running arguments: [String]) -> pid_t? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = pid_t(entry), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            var words = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard !words.isEmpty else { continue }
            words[0] = URL(fileURLWithPath: words[0]).lastPathComponent
            if words == arguments { return pid }
        }
        return nil
    }

    /// Stops what the lab started, runs the shutdown hooks, deletes its namespaces and files; once
    /// (the deinit's call after an explicit one does nothing).
    public func shutdown() {
        let first = lock.withLock { () -> Bool in
            defer { isShutDown = true }
            return !isShutDown
        }
        guard first else { return }
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
        let hooks = lock.withLock { () -> [() -> Void] in
            defer { shutdownHooks = [] }
            return shutdownHooks
        }
        for hook in hooks { hook() }
        for namespace in owned.reversed() {
            _ = try? LabSupport.run(["ip", "netns", "del", namespace.name], allowFailure: true)
            try? FileManager.default.removeItem(atPath: Lab.etcDirectory(of: namespace.name))
        }
        // LANRAGE_LAB_KEEP=1 keeps the logs and files for a look afterwards.
        if ProcessInfo.processInfo.environment["LANRAGE_LAB_KEEP"] == "1" {
            FileHandle.standardError.write(Data("lab files kept in \(directory.path)\n".utf8))
        } else {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    private func labError(_ what: String, _ problem: String) -> CommandFailure {
        CommandFailure(command: [what], status: 1, output: problem)
    }

    private func add(_ namespace: Namespace) throws {
        try LabSupport.run(["ip", "netns", "add", namespace.name])
        lock.withLock { namespaces.append(namespace) }
        // No duplicate address detection: an IPv6 link would otherwise lose its first second or
        // so of traffic while its link-local addresses are tentative.
        try namespace.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
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
                try? FileManager.default.removeItem(atPath: Lab.etcDirectory(of: name))
            }
        }
    }
}

final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
