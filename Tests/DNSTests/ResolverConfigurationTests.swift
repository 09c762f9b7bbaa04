import DNS
import Net
import Testing

@Suite struct ResolverConfigurationTests {
    @Test func nameServersAndOptionsAreReadAsTheCLibraryReadsThem() {
        var configuration = ResolverConfiguration()
        configuration.parse(resolvConf: Array("""
            # written by the DHCP client
            search lan
            nameserver 192.0.2.53
            nameserver   2001:db8::53 ; second
            nameserver not-an-address
            nameserver 192.0.2.54
            nameserver 192.0.2.55
            options rotate timeout:2 attempts:3 attempts:99
            """.utf8))
        #expect(configuration.nameServers == ["192.0.2.53:53", "[2001:db8::53]:53", "192.0.2.54:53"].map { Endpoint($0)! })
        #expect(configuration.timeout == .seconds(2) && configuration.attempts == 3)
    }

    @Test func withoutNameServersTheLocalOneIsAsked() {
        #expect(ResolverConfiguration().servers == [Endpoint("127.0.0.1:53")!])
    }

    @Test func theHostsFileGivesAddressesOfTheFamilyAsked() {
        var configuration = ResolverConfiguration()
        configuration.parse(hosts: Array("""
            127.0.0.1 localhost
            192.0.2.9   Control.Lab.Example control   # the party's server
            2001:db8::9 control.lab.example
            bogus line
            """.utf8))
        #expect(configuration.hostsAddresses(for: "control.lab.example", type: .a) == [.v4(IPv4Address(192, 0, 2, 9))])
        #expect(configuration.hostsAddresses(for: "control", type: .a) == [.v4(IPv4Address(192, 0, 2, 9))])
        #expect(configuration.hostsAddresses(for: "control.lab.example", type: .aaaa) == [.v6(IPv6Address("2001:db8::9")!)])
        #expect(configuration.hostsAddresses(for: "other", type: .a).isEmpty)
    }
}
