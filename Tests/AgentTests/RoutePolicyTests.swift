import Net
import Testing
import WireGuard
@testable import Agent

/// Which of a member's prefixes the agent lets into WireGuard and the routing table, rule by rule.
struct RoutePolicyTests {
    static func p(_ text: String) -> IPPrefix { IPPrefix(text)! }

    /// A host on a LAN (203.0.113.0/24 and 2001:db8:1::/64 on eth0, default route through it),
    /// agent interface lanrage0 with 100.64.0.1/32, the control server at 192.0.2.1.
    static func policy(own: [String] = ["100.64.0.1/32"], routes extra: [KernelRoute] = [],
                       held: [(peer: String, prefix: IPPrefix)] = []) -> RoutePolicy {
        let routes = [
            KernelRoute(p("0.0.0.0/0"), interfaceIndex: 2, interfaceName: "eth0", routingProtocol: 16),
            KernelRoute(p("203.0.113.0/24"), interfaceIndex: 2, interfaceName: "eth0", scope: 253),
            KernelRoute(p("203.0.113.7/32"), interfaceIndex: 2, interfaceName: "eth0", scope: 254, type: KernelRoute.local,
                        table: KernelRoute.localTable),
            KernelRoute(p("::/0"), interfaceIndex: 2, interfaceName: "eth0", routingProtocol: 9, metric: 1024),
            KernelRoute(p("2001:db8:1::/64"), interfaceIndex: 2, interfaceName: "eth0", metric: 256),
        ] + extra
        return RoutePolicy(interfaceName: "lanrage0", ownAddresses: own.map(p), kernelRoutes: routes, held: held,
                           underlay: [IPAddress("192.0.2.1")!])
    }

    @Test func overlayHostsAndFreeSubnetsAreAllowedAndRouted() {
        let decision = Self.policy().decide(["100.64.0.2/32", "198.51.100.128/25", "2001:db8:9::/48"].map(Self.p))
        #expect(decision.allowedIPs == ["100.64.0.2/32", "198.51.100.128/25", "2001:db8:9::/48"].map(Self.p))
        #expect(decision.routes == decision.allowedIPs)
        #expect(decision.refused.isEmpty)
    }

    @Test func hostBitsSetAreRefusedNotNormalised() {
        let decision = Self.policy().decide(["100.64.0.2/24", "198.51.100.129/25"].map(Self.p))
        #expect(decision.allowedIPs.isEmpty)
        #expect(decision.refused == [Self.p("100.64.0.2/24"): .hostBitsSet, Self.p("198.51.100.129/25"): .hostBitsSet])
    }

    @Test func defaultRoutesAreNeverInstalled() {
        let decision = Self.policy().decide(["0.0.0.0/0", "::/0"].map(Self.p))
        #expect(decision.allowedIPs.isEmpty)
        #expect(decision.refused == [Self.p("0.0.0.0/0"): .defaultRoute, Self.p("::/0"): .defaultRoute])
    }

    @Test(arguments: [
        ("127.0.0.0/8", "loopback"), ("127.0.0.1/32", "loopback"), ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"), ("169.254.7.0/24", "link-local"), ("fe80::/64", "link-local"),
        ("224.0.0.0/4", "multicast"), ("239.1.2.3/32", "multicast"), ("ff02::1/128", "multicast"),
        ("0.0.0.0/8", "the unspecified range"), ("::/128", "the unspecified address"), ("255.255.255.255/32", "the broadcast address"),
        // The halves of the address space contain some of them.
        ("0.0.0.0/1", "the unspecified range"), ("128.0.0.0/1", "link-local"), ("::/1", "the unspecified address"), ("8000::/1", "link-local"),
        ("192.0.0.0/2", "multicast"),
    ])
    func addressesNeverRoutedToAPeerAreRefused(_ prefix: String, _ name: String) {
        let reason = Self.policy().refusal(of: Self.p(prefix))
        guard case .reserved(let found, _) = reason else {
            Issue.record("\(prefix): \(reason.map { "\($0)" } ?? "allowed")")
            return
        }
        #expect(found == name, "\(prefix)")
    }

    @Test func neighboursOfReservedRangesAreAllowed() {
        let decision = Self.policy().decide(["126.0.0.0/8", "128.0.0.0/3", "169.253.0.0/16", "2001:db8:2::/48"].map(Self.p))
        #expect(decision.allowedIPs == ["126.0.0.0/8", "128.0.0.0/3", "169.253.0.0/16", "2001:db8:2::/48"].map(Self.p))
    }

    @Test func kernelRoutesOfOtherInterfacesAreNeitherReplacedNorShadowed() {
        let lan = KernelRoute(Self.p("203.0.113.0/24"), interfaceIndex: 2, interfaceName: "eth0", scope: 253)
        let policy = Self.policy()
        #expect(policy.refusal(of: Self.p("203.0.113.0/24")) == .kernelRoute(lan), "equal: would replace the LAN route")
        #expect(policy.refusal(of: Self.p("203.0.113.128/25")) == .kernelRoute(lan), "inside: would shadow part of the LAN")
        #expect(policy.refusal(of: Self.p("203.0.0.0/16")) == .kernelRoute(lan), "containing: would take the LAN's neighbours")
        #expect(policy.refusal(of: Self.p("2001:db8:1:0:8000::/65")) != nil)
        // The host's own address (local table) on an interface without a prefix route.
        let own = KernelRoute(Self.p("192.0.2.7/32"), interfaceIndex: 3, interfaceName: "dummy0", scope: 254, type: KernelRoute.local,
                              table: KernelRoute.localTable)
        #expect(Self.policy(routes: [own]).refusal(of: Self.p("192.0.2.0/28")) == .kernelRoute(own))
        // Other daemons' routes, and routes without an interface.
        let bird = KernelRoute(Self.p("198.51.100.0/24"), interfaceIndex: 4, interfaceName: "eth1", routingProtocol: 12)
        #expect(Self.policy(routes: [bird]).refusal(of: Self.p("198.51.100.64/26")) == .kernelRoute(bird))
        let blackhole = KernelRoute(Self.p("198.51.100.0/25"), routingProtocol: 4, type: 6)
        #expect(Self.policy(routes: [blackhole]).refusal(of: Self.p("198.51.100.0/25")) == .kernelRoute(blackhole))
    }

    @Test func beingMoreSpecificThanADefaultRouteIsTheNormalCase() {
        let unreachable = KernelRoute(Self.p("::/0"), routingProtocol: 3, type: 7, metric: 4_278_198_272)
        let decision = Self.policy(routes: [unreachable]).decide(["198.51.100.0/24", "2001:db8:5::/48"].map(Self.p))
        #expect(decision.allowedIPs == ["198.51.100.0/24", "2001:db8:5::/48"].map(Self.p))
    }

    @Test func routesThroughTheAgentsOwnInterfaceAreNotForeign() {
        // The kernel's route for the agent's subnet, and one left by an earlier run on an adopted interface.
        let subnet = KernelRoute(Self.p("100.64.0.0/10"), interfaceIndex: 9, interfaceName: "lanrage0", scope: 253)
        let leftover = KernelRoute(Self.p("198.51.100.128/25"), interfaceIndex: 9, interfaceName: "lanrage0", routingProtocol: 4, scope: 253)
        let decision = Self.policy(own: ["100.64.0.1/10"], routes: [subnet, leftover]).decide(["100.64.0.2/32", "198.51.100.128/25"].map(Self.p))
        #expect(decision.allowedIPs == ["100.64.0.2/32", "198.51.100.128/25"].map(Self.p))
        #expect(decision.routes == [Self.p("198.51.100.128/25")], "the subnet's own route covers the peer's address")
    }

    @Test func theAgentsOwnAddressesAreRefused() {
        let policy = Self.policy(own: ["100.64.0.1/10", "2001:db8:64::1/64"])
        #expect(policy.refusal(of: Self.p("100.64.0.1/32")) == .ownAddress(Self.p("100.64.0.1/10")))
        #expect(policy.refusal(of: Self.p("100.64.0.0/10")) == .ownAddress(Self.p("100.64.0.1/10")), "the agent's own subnet")
        #expect(policy.refusal(of: Self.p("100.64.0.0/24")) == .ownAddress(Self.p("100.64.0.1/10")), "contains the agent's address")
        #expect(policy.refusal(of: Self.p("2001:db8:64::/64")) == .ownAddress(Self.p("2001:db8:64::1/64")))
        #expect(policy.refusal(of: Self.p("100.64.0.2/32")) == nil)
        #expect(policy.refusal(of: Self.p("2001:db8:64::2/128")) == nil)
    }

    @Test func aPrefixAnotherPeerHoldsStaysWithIt() {
        let held: [(peer: String, prefix: IPPrefix)] = [("peer-b", Self.p("100.64.0.2/32")), ("peer-b", Self.p("198.51.100.0/24"))]
        let policy = Self.policy(held: held)
        #expect(policy.refusal(of: Self.p("100.64.0.2/32")) == .heldByPeer("peer-b", Self.p("100.64.0.2/32")))
        #expect(policy.refusal(of: Self.p("100.64.0.2/31")) == .heldByPeer("peer-b", Self.p("100.64.0.2/32")), "containing")
        #expect(policy.refusal(of: Self.p("198.51.100.128/25")) == .heldByPeer("peer-b", Self.p("198.51.100.0/24")), "inside")
        #expect(policy.refusal(of: Self.p("100.64.0.3/32")) == nil)
    }

    @Test func addressesTheAgentReachesOutsideTheTunnelStayOutside() {
        let policy = Self.policy()
        #expect(policy.refusal(of: Self.p("192.0.2.0/24")) == .underlay(IPAddress("192.0.2.1")!))
        #expect(policy.refusal(of: Self.p("192.0.2.1/32")) == .underlay(IPAddress("192.0.2.1")!))
        #expect(policy.refusal(of: Self.p("192.0.2.128/25")) == nil)
    }

    @Test func aRefusedPrefixIsNeitherAnAllowedIPNorARoute() {
        let announced = ["128.0.0.0/1", "203.0.113.0/24", "203.0.113.7/32", "100.64.0.2/32", "127.0.0.0/8", "0.0.0.0/0",
                         "100.64.0.9/32", "198.51.100.128/25", "100.64.0.9/32"].map(Self.p)
        let decision = Self.policy(held: [("peer-b", Self.p("100.64.0.2/32"))]).decide(announced)
        #expect(decision.allowedIPs == ["100.64.0.9/32", "198.51.100.128/25"].map(Self.p), "in order, the repeat dropped")
        #expect(Set(decision.refused.keys) == Set(announced).subtracting(decision.allowedIPs))
        #expect(decision.routes.allSatisfy(decision.allowedIPs.contains))
    }

    @Test func reasonsNameWhatWasInTheWay() {
        let policy = Self.policy(held: [("peer-b", Self.p("100.64.0.2/32"))])
        #expect(policy.refusal(of: Self.p("203.0.113.0/24"))?.description
            == "overlaps this host's route '203.0.113.0/24 dev eth0 proto kernel scope link', which the agent does not replace nor shadow")
        #expect(policy.refusal(of: Self.p("203.0.113.7/32"))?.description.contains("203.0.113.") == true)
        #expect(policy.refusal(of: Self.p("100.64.0.2/32"))?.description.contains("peer peer-b holds") == true)
        #expect(policy.refusal(of: Self.p("127.0.0.0/8"))?.description == "overlaps loopback 127.0.0.0/8, which is never routed to a peer")
        #expect(KernelRoute(Self.p("203.0.113.7/32"), interfaceName: "eth0", scope: 254, type: KernelRoute.local, table: KernelRoute.localTable)
            .description == "local 203.0.113.7/32 dev eth0 table local proto kernel scope host")
        #expect(KernelRoute(Self.p("0.0.0.0/0"), interfaceName: "eth0", routingProtocol: 16, metric: 100).description
            == "default dev eth0 proto dhcp metric 100")
    }
}
