import Foundation
import LabSupport
import Net
import Testing
import WireGuard
@testable import Agent

/// RoutePolicy over the kernel's routes read with real rtnetlink, in a namespace with a LAN
/// (203.0.113.4/30 on eth0, default route through it) and a wireguard-go interface: an attacker's
/// prefixes are refused, the legitimate ones installed, the LAN route never changes, and removing
/// the installed routes leaves the table exactly as it was.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct RoutePolicyLabTests {
    static func p(_ text: String) -> IPPrefix { IPPrefix(text)! }

    @Test func attackerPrefixesAreRefusedOverRealRoutes() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let host = try lab.addSite(.open, verify: false).client
        let interface = "lr\(lab.prefix.replacingOccurrences(of: "ls", with: "").replacingOccurrences(of: "-", with: "x"))w".suffix(15).description
        try lab.startWireGuardGo(in: host, interface: interface, listenPort: 51820)
        try host.run("ip", "addr", "add", "100.64.0.1/32", "dev", interface)
        func table() throws -> String {
            try host.run("ip", "route", "show") + host.run("ip", "-6", "route", "show") + host.run("ip", "route", "show", "table", "local")
        }
        let before = try table()
        let lan = try host.run("ip", "route", "show", "dev", "eth0")

        let kernel = try host.inside { try RouteNetlink.kernelRoutes() }
        let lanRoute = try #require(kernel.first { $0.prefix == Self.p("203.0.113.4/30") }, "\(kernel)")
        #expect(lanRoute.interfaceName == "eth0" && lanRoute.description == "203.0.113.4/30 dev eth0 proto kernel scope link")
        let policy = RoutePolicy(interfaceName: interface, ownAddresses: [Self.p("100.64.0.1/32")], kernelRoutes: kernel,
                                 held: [("member-b", Self.p("100.64.0.2/32"))], underlay: [Lab.stunPrimary].map(IPAddress.v4))
        let decision = policy.decide(["128.0.0.0/1", "203.0.113.4/30", "203.0.113.6/32", "127.0.0.0/8", "0.0.0.0/0", "100.64.0.2/32",
                                      "100.64.0.3/32", "198.51.100.128/25"].map(Self.p))
        #expect(decision.allowedIPs == ["100.64.0.3/32", "198.51.100.128/25"].map(Self.p))
        #expect(decision.routes == decision.allowedIPs)
        #expect(decision.refused[Self.p("203.0.113.4/30")] == .kernelRoute(lanRoute), "the LAN's own prefix")
        guard case .kernelRoute = decision.refused[Self.p("203.0.113.6/32")] else {
            Issue.record("a prefix inside the LAN: \(decision.refused)")
            return
        }
        #expect(decision.refused[Self.p("100.64.0.2/32")] == .heldByPeer("member-b", Self.p("100.64.0.2/32")))
        #expect(decision.refused[Self.p("0.0.0.0/0")] == .defaultRoute)
        #expect(decision.refused[Self.p("127.0.0.0/8")] == .reserved(name: "loopback", range: Self.p("127.0.0.0/8")))
        #expect(decision.refused[Self.p("128.0.0.0/1")] != nil)

        try host.inside {
            for route in decision.routes { try RouteNetlink.addRoute(interface, route) }
            // Were the policy bypassed, the kernel still refuses to replace the LAN route.
            #expect { try RouteNetlink.addRoute(interface, Self.p("203.0.113.4/30")) } throws: { ($0 as? WireGuardError)?.kind == .exists }
        }
        #expect(try host.run("ip", "route", "show", "dev", "eth0") == lan, "the LAN route, byte for byte")
        let routed = try host.run("ip", "route", "show", "dev", interface).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(routed == ["100.64.0.3 proto static scope link", "198.51.100.128/25 proto static scope link"], "\(routed)")

        // Read again, the agent's routes are through its own interface: not in the way of its own decisions.
        let after = try host.inside { try RouteNetlink.kernelRoutes() }
        #expect(after.filter { $0.interfaceName == interface && $0.routingProtocol == 4 }.map(\.prefix) == decision.routes, "\(after)")
        let again = RoutePolicy(interfaceName: interface, ownAddresses: policy.ownAddresses, kernelRoutes: after, held: policy.held,
                                underlay: policy.underlay).decide(decision.allowedIPs)
        #expect(again.allowedIPs == decision.allowedIPs && again.routes == decision.routes)

        try host.inside { for route in decision.routes { try RouteNetlink.deleteRoute(interface, route) } }
        #expect(try table() == before, "exactly the added routes are gone")
    }
}
