import Net

/// What a lookup needs from the system, as glibc's stub resolver reads it: the name servers and
/// timing of `/etc/resolv.conf`, and the addresses `/etc/hosts` gives (looked up first, as the
/// usual `hosts: files dns` does). Read again for every lookup: on a router the name servers
/// arrive with the WAN lease, after the agent started.
public struct ResolverConfiguration: Sendable {
    /// At most three (`MAXNS`), port 53; 127.0.0.1 when the file names none.
    public var nameServers: [Endpoint] = []
    /// How long to wait for each server's answer (`options timeout:N`, 1–30 s; 5 s by default).
    public var timeout: Duration = .seconds(5)
    /// Rounds over the servers (`options attempts:N`, 1–5; 2 by default).
    public var attempts = 2
    /// The lines of the hosts file: an address and its names, lowercased.
    public var hosts: [(address: IPAddress, names: [String])] = []

    public init() {}

    /// Reads both files; a missing file counts as an empty one.
    public static func system(resolvConf: String = "/etc/resolv.conf", hosts: String = "/etc/hosts") -> ResolverConfiguration {
        var configuration = ResolverConfiguration()
        configuration.parse(resolvConf: SmallFile.read(resolvConf) ?? [])
        configuration.parse(hosts: SmallFile.read(hosts) ?? [])
        return configuration
    }

    /// Takes `nameserver` and `options timeout:/attempts:` lines; other lines and bad values are
    /// skipped, as the C library skips them.
    public mutating func parse(resolvConf text: [UInt8]) {
        for words in Self.lines(text) {
            switch words.first {
            case "nameserver":
                guard words.count >= 2, nameServers.count < 3, let address = IPAddress(words[1]) else { continue }
                nameServers.append(Endpoint(address, 53))
            case "options":
                for option in words.dropFirst() {
                    if option.hasPrefix("timeout:"), let seconds = Int(option.dropFirst(8)), (1...30).contains(seconds) {
                        timeout = .seconds(seconds)
                    } else if option.hasPrefix("attempts:"), let count = Int(option.dropFirst(9)), (1...5).contains(count) {
                        attempts = count
                    }
                }
            default: continue
            }
        }
    }

    /// Takes `ADDRESS NAME [ALIAS...]` lines (at most 1,024 of them).
    public mutating func parse(hosts text: [UInt8]) {
        for words in Self.lines(text) where hosts.count < 1024 {
            guard words.count >= 2, let address = IPAddress(words[0]) else { continue }
            hosts.append((address, words.dropFirst().compactMap { ServerAddress.hostName($0[...]) }))
        }
    }

    /// The name servers to ask: the file's, or 127.0.0.1 (what the C library assumes).
    public var servers: [Endpoint] {
        nameServers.isEmpty ? [Endpoint(.v4(IPv4Address(127, 0, 0, 1)), 53)] : nameServers
    }

    /// The hosts file's addresses for `name` of the type asked for, in file order.
    public func hostsAddresses(for name: String, type: DNSRecordType) -> [IPAddress] {
        hosts.filter { $0.names.contains(name) }.map { $0.address }.filter { address in
            switch (address, type) {
            case (.v4, .a), (.v6, .aaaa): true
            default: false
            }
        }
    }

    /// The words of each line, comments (`#`, `;`) dropped, empty lines skipped.
    private static func lines(_ text: [UInt8]) -> [[String]] {
        text.split(separator: UInt8(ascii: "\n")).compactMap { line in
            let content = line.prefix { $0 != UInt8(ascii: "#") && $0 != UInt8(ascii: ";") }
            let words = content.split { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }.map { String(decoding: $0, as: UTF8.self) }
            return words.isEmpty ? nil : words
        }
    }
}
