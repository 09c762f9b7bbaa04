import Foundation
import Net
import Testing
@testable import WireGuard

/// rtnetlink through libnl for real: link up/down, addresses and routes on a veth pair in a namespace,
/// each change checked with `ip`.
@Suite(.serialized, .enabled(if: Lab.isRoot, "needs root for network namespaces"))
struct RouteNetlinkTests {
    @Test func linkStateAddressesAndRoutesOnVeth() throws {
        Lab.removeStale()
        let lab = Lab(tag: "r")
        defer { lab.tearDown() }
        let ns = try lab.namespace("a")
        let veth = lab.prefix + "v0", other = lab.prefix + "v1"
        try Run.checked(["ip", "-n", ns, "link", "add", veth, "type", "veth", "peer", "name", other])

        func ipShows(_ args: [String]) throws -> String { try Run.checked(["ip", "-n", ns] + args) }

        try InNamespace.run(ns) {
            #expect(try RouteNetlink.isUp(veth) == false)
            try RouteNetlink.setUp(veth, true)
            try RouteNetlink.setUp(other, true)
            #expect(try RouteNetlink.isUp(veth))
        }
        #expect(try ipShows(["link", "show", veth]).contains(",UP"))

        let v4 = IPPrefix("192.0.2.1/24")!, v6 = IPPrefix("2001:db8:5::1/64")!, v4b = IPPrefix("198.51.100.7/25")!
        try InNamespace.run(ns) {
            try RouteNetlink.addAddress(veth, v4)
            try RouteNetlink.addAddress(veth, v6)
            try RouteNetlink.addAddress(veth, v4)  // again: replaces, no error
            #expect(Set(try RouteNetlink.addresses(veth)) == [v4, v6])
        }
        let shown = try ipShows(["addr", "show", "dev", veth])
        #expect(shown.contains("inet 192.0.2.1/24") && shown.contains("inet6 2001:db8:5::1/64"))

        // setAddresses makes the set exact: one removed, one added.
        let changed = try InNamespace.run(ns) { try RouteNetlink.setAddresses(veth, [v6, v4b]) }
        #expect(changed.added == [v4b] && changed.removed == [v4])
        let after = try ipShows(["addr", "show", "dev", veth])
        #expect(!after.contains("192.0.2.1/24") && after.contains("198.51.100.7/25") && after.contains("2001:db8:5::1/64"))
        #expect(try InNamespace.run(ns) { try RouteNetlink.setAddresses(veth, [v6, v4b]) } == ([], []))

        // Routes to the link, IPv4 and IPv6.
        try InNamespace.run(ns) {
            try RouteNetlink.addRoute(veth, IPPrefix("203.0.113.0/24")!)
            try RouteNetlink.addRoute(veth, IPPrefix("2001:db8:77::/48")!)
            let routes = try RouteNetlink.routes(veth)
            #expect(routes.contains(IPPrefix("203.0.113.0/24")!) && routes.contains(IPPrefix("2001:db8:77::/48")!))
        }
        #expect(try ipShows(["route", "show", "dev", veth]).contains("203.0.113.0/24"))
        #expect(try ipShows(["-6", "route", "show", "dev", veth]).contains("2001:db8:77::/48"))

        // A route is never replaced: not its own, nor another link's connected route.
        let connected = try ipShows(["route", "show", "198.51.100.0/25"])
        #expect(connected.contains("dev \(veth) proto kernel scope link"), "\(connected)")
        try InNamespace.run(ns) {
            #expect { try RouteNetlink.addRoute(veth, IPPrefix("203.0.113.0/24")!) } throws: { ($0 as? WireGuardError)?.kind == .exists }
            #expect { try RouteNetlink.addRoute(other, IPPrefix("198.51.100.0/25")!) } throws: { error in
                let error = error as? WireGuardError
                return error?.kind == .exists && error!.message.contains("a route to 198.51.100.0/25 exists already")
            }
        }
        #expect(try ipShows(["route", "show", "198.51.100.0/25"]) == connected)

        // The kernel's routes as values: the main table, and the local table's own addresses.
        let kernel = try InNamespace.run(ns) { try RouteNetlink.kernelRoutes() }
        let index = try InNamespace.run(ns) { try RouteNetlink.index(veth) }
        #expect(kernel.contains(KernelRoute(IPPrefix("198.51.100.0/25")!, interfaceIndex: index, interfaceName: veth, routingProtocol: 2,
                                            scope: 253)), "\(kernel)")
        #expect(kernel.contains(KernelRoute(IPPrefix("203.0.113.0/24")!, interfaceIndex: index, interfaceName: veth, routingProtocol: 4,
                                            scope: 253)), "\(kernel)")
        #expect(kernel.contains(KernelRoute(IPPrefix("198.51.100.7/32")!, interfaceIndex: index, interfaceName: veth, routingProtocol: 2,
                                            scope: 254, type: KernelRoute.local, table: KernelRoute.localTable)), "\(kernel)")
        #expect(kernel.contains { $0.prefix == IPPrefix("2001:db8:77::/48")! && $0.interfaceName == veth && $0.metric == 1024 }, "\(kernel)")
        #expect(!kernel.contains { $0.table == KernelRoute.localTable && $0.type != KernelRoute.local }, "broadcast routes left out")

        try InNamespace.run(ns) { try RouteNetlink.deleteRoute(veth, IPPrefix("203.0.113.0/24")!) }
        #expect(!(try ipShows(["route", "show", "dev", veth]).contains("203.0.113.0/24")))
        #expect(try ipShows(["route", "show", "198.51.100.0/25"]) == connected, "deleting the static route leaves the connected one")

        // Down again, then errors: a missing link, a taken name, a kind this kernel lacks.
        try InNamespace.run(ns) {
            try RouteNetlink.setUp(veth, false)
            #expect(try RouteNetlink.isUp(veth) == false)
            #expect { try RouteNetlink.setUp("lwmissing0", true) } throws: { ($0 as? WireGuardError)?.kind == .notFound }
            #expect { try RouteNetlink.createLink(veth, kind: "dummy") } throws: { ($0 as? WireGuardError)?.kind == .exists }
            #expect { try RouteNetlink.createLink("lw" + "bad/name", kind: "dummy") } throws: { ($0 as? WireGuardError)?.kind == .invalidInput }
        }
        #expect(!(try ipShows(["link", "show", veth]).contains(",UP")))

        // The link list by kind, and deletion.
        let veths = try InNamespace.run(ns) { try RouteNetlink.links(kind: "veth") }
        #expect(Set(veths) == [veth, other])
        try InNamespace.run(ns) { try RouteNetlink.deleteLink(veth) }
        #expect(try Run.command(["ip", "-n", ns, "link", "show", veth]).status != 0)
    }

    /// This host's kernel has no WireGuard module: the netlink backend says so clearly, and
    /// `--backend netlink` exits with EX_UNAVAILABLE.
    @Test(.enabled(if: !NetlinkBackend.kernelModuleAvailable(), "the kernel has WireGuard; make test-kernel covers it"))
    func netlinkBackendReportsMissingModule() throws {
        #expect { try NetlinkBackend() } throws: { error in
            let error = error as? WireGuardError
            return error?.kind == .unavailable && error!.message.contains("modprobe wireguard")
        }
        let lab = Lab(tag: "m")
        defer { lab.tearDown() }
        let ns = try lab.namespace("a")
        let result = try lab.run(ns, [Run.lanrage, "wg", "show", "--backend", "netlink"])
        #expect(result.status == 69 && result.error.contains("no WireGuard module"))
        let created = try InNamespace.run(ns) { () -> WireGuardError? in
            do { try RouteNetlink.createLink(lab.prefix + "w0", kind: "wireguard"); return nil } catch { return error as? WireGuardError }
        }
        #expect(created?.kind == .unavailable)
    }
}
