import Testing
@testable import Net

@Suite struct EndpointTests {
    @Test func parsesAndPrintsIPv4() throws {
        let endpoint = try #require(Endpoint("192.0.2.1:3478"))
        #expect(endpoint.port == 3478)
        #expect(endpoint.address == .v4(IPv4Address(192, 0, 2, 1)))
        #expect(endpoint.description == "192.0.2.1:3478")
    }

    @Test func parsesAndPrintsIPv6() throws {
        let endpoint = try #require(Endpoint("[2001:db8::1]:51820"))
        #expect(endpoint.port == 51820)
        #expect(endpoint.description == "[2001:db8::1]:51820")
        #expect(IPv6Address("2001:db8:0:0:1:0:0:1")?.description == "2001:db8::1:0:0:1")
        #expect(IPv6Address("::")?.description == "::")
        #expect(IPv6Address("::1")?.bytes == [UInt8](repeating: 0, count: 15) + [1])
    }

    @Test(arguments: ["", "192.0.2.1", "192.0.2.1:", "192.0.2.1:65536", "192.0.2:80", "192.0.2.01:80",
                      "256.0.0.1:1", "[2001:db8::1]", "2001:db8::1:80", "[2001:db8:::1]:80", "[::1]:-1", "x:1"])
    func rejectsMalformedText(_ text: String) {
        #expect(Endpoint(text) == nil)
    }

    @Test(arguments: [("1::", "1::"), ("::", "::"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("2001:DB8::A", "2001:db8::a"),
                      ("0:0:0:0:0:0:0:1", "::1"), ("2001:db8:0:0:1::", "2001:db8:0:0:1::"), ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1")])
    func parsesIPv6Forms(text: String, printed: String) throws {
        #expect(try #require(IPv6Address(text)).description == printed)
    }

    @Test(arguments: ["1:2:3:4:5:6:7:8:9", "1:::2", ":1", "1:", "12345::", "g::", "1::2::3", "1:2:3:4:5:6:7::8", "::ffff:1.2.3.4", ""])
    func rejectsMalformedIPv6(_ text: String) {
        #expect(IPv6Address(text) == nil)
    }

    @Test(arguments: ["0.0.0.0", "255.255.255.255", "192.0.2.10"])
    func parsesIPv4(_ text: String) throws {
        #expect(try #require(IPv4Address(text)).description == text)
    }

    @Test(arguments: ["1.2.3", "1.2.3.4.5", "1..2.3", "01.2.3.4", "1.2.3.256", "1.2.3.4.", ".1.2.3", "1.2.3.a", "1000.2.3.4", "١.٢.٣.٤"])
    func rejectsMalformedIPv4(_ text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test(arguments: [("2001:db8::1", true), ("2600::1", true), ("3fff::1", true), ("fd00::1", true), ("fc00::1", true),
                      ("fe80::1", false), ("::1", false), ("::", false), ("ff02::1", false), ("::ffff:c000:201", false), ("4000::1", false)])
    func routableIPv6AddressesAreGlobalOrUniqueLocal(_ text: String, _ routable: Bool) throws {
        #expect(try #require(IPv6Address(text)).isRoutable == routable)
    }

    @Test func roundTripsThroughSockAddr() throws {
        for text in ["203.0.113.7:9", "[2001:db8::42]:65535"] {
            let endpoint = try #require(Endpoint(text))
            let back = endpoint.withSockAddr { pointer, _ in
                pointer.withMemoryRebound(to: sockaddr_storage.self, capacity: 1) { Endpoint($0.pointee) }
            }
            #expect(back == endpoint)
        }
    }

    @Test func udpSocketsExchangeADatagramOnLoopback() throws {
        let a = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let b = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        #expect(a.local.port != 0)
        try a.send([1, 2, 3], to: b.local)
        var buffer = [UInt8](repeating: 0, count: 64)
        var received: (count: Int, from: Endpoint)?
        for _ in 0..<1000 where received == nil {
            received = try b.receive(into: &buffer)
            if received == nil { usleep(1000) }
        }
        let got = try #require(received)
        #expect(Array(buffer[..<got.count]) == [1, 2, 3])
        #expect(got.from == a.local)
    }

    @Test func bindingAPortInUseNamesTheProblem() throws {
        let a = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        #expect(throws: SystemError.self) { try UDPSocket(binding: a.local) }
        do {
            _ = try UDPSocket(binding: a.local)
        } catch {
            #expect(error.description.contains("bind 127.0.0.1:\(a.local.port)"))
            #expect(error.description.contains("another process holds this port"))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
