import Foundation
import Testing

/// The `lanrage` binary as a user runs it: output, messages and exit statuses.
@Suite struct CommandLineTests {
    /// Runs the `lanrage` built beside the test bundle.
    static func lanrage(_ arguments: [String], input: URL? = nil) throws -> (status: Int32, out: String, err: String) {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var binary = directory.appendingPathComponent("lanrage")
        if !FileManager.default.fileExists(atPath: binary.path) {
            binary = directory.deletingLastPathComponent().appendingPathComponent("lanrage")
        }
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        if let input { process.standardInput = try FileHandle(forReadingFrom: input) }
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    @Test func chartPrintsThePeerChartAsDotByDefault() throws {
        let result = try Self.lanrage(["chart"])
        #expect(result.status == 0)
        #expect(result.out.hasPrefix("digraph peer {"))
        let explicit = try Self.lanrage(["chart", "peer", "--format", "dot"])
        #expect(explicit.out == result.out)
    }

    @Test func chartPrintsJSON() throws {
        let result = try Self.lanrage(["chart", "peer", "--format=json"])
        #expect(result.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any]
        #expect(object?["name"] as? String == "peer")
        // One JSON row per edge of the DOT picture (the same table drawn twice).
        let dot = try Self.lanrage(["chart", "peer"]).out
        let edges = dot.split(separator: "\n").filter { $0.contains(" -> ") && !$0.contains("__start") }.count
        #expect((object?["rows"] as? [Any])?.count == edges)
    }

    @Test func anUnknownChartIsAUsageError() throws {
        let result = try Self.lanrage(["chart", "nosuch"])
        #expect(result.status == 64)
        #expect(result.out.isEmpty)
        #expect(result.err.contains("lanrage chart: unknown chart 'nosuch' (expected peer, detection, registration)"))
    }

    @Test(arguments: [
        (["chart", "--format", "xml"], "invalid value 'xml' for --format (expected dot or json)"),
        (["chart", "--log-level", "loud"], "invalid value 'loud' for --log-level"),
        (["chart", "--log-format", "yaml"], "invalid value 'yaml' for --log-format (expected logfmt or json)"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["chart", "--nope"], "unknown option '--nope'"),
        (["punch", "--peer", "x"], "missing --key-file FILE"),
        (["punch", "--key-file", "/nonexistent", "--peer", "x", "--candidate", "192.0.2.1:1"], "invalid value 'x' for --peer"),
        (["punch", "--key-file", "k", "--peer", "ukWalzbwklNUZsE4hewFbDGvKq/i9/Pl5Rbb5gpL7Ss=", "--candidate", "nowhere"],
         "invalid value 'nowhere' for --candidate"),
        (["control", "--listen", "192.0.2.1:3478", "--listen", "192.0.2.2:3478", "--state", "/nonexistent", "--key", "k"],
         "--listen: at most one IPv4 and one IPv6 endpoint"),
        (["control", "--listen", "[2001:db8::1]:3478", "--alternate", "192.0.2.2:3479", "--state", "/nonexistent", "--key", "k"],
         "--alternate needs a --listen of its address family"),
        (["control", "--listen", "192.0.2.1:3478", "--alternate", "192.0.2.2:3478", "--state", "/nonexistent", "--key", "k"],
         "--alternate must differ from --listen in both IP and port"),
        (["relay", "--listen", "192.0.2.1", "--listen", "192.0.2.2", "--ports", "4000-4010", "--secret-file", "s"],
         "--listen: at most one IPv4 and one IPv6 address"),
        (["relay", "--listen", "relay.example", "--ports", "4000-4010", "--secret-file", "s"], "invalid --listen 'relay.example' (expected an IPv4 or IPv6 address)"),
        (["relay", "--ports", "4000-4010", "--secret-file", "s"], "missing --listen IP"),
    ])
    func badArgumentsAreNamed(arguments: [String], message: String) throws {
        let process = try Self.lanrage(arguments)
        #expect(process.status == 64)
        #expect(process.err.contains(message))
    }

    /// `agent --check` reads the whole configuration (key and certificate files, the certificate
    /// against the authority) and exits: 0 and a summary when valid, 78 naming the problem when not.
    @Test func agentCheckValidatesAConfigurationAndExits() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lrcheck-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = directory.appendingPathComponent("private.key"), ca = directory.appendingPathComponent("ca.key")
        let certificate = directory.appendingPathComponent("member.cert"), config = directory.appendingPathComponent("agent.conf")
        #expect(try Self.lanrage(["genkey", "-o", key.path]).status == 0)
        #expect(try Self.lanrage(["ca", "genkey", "-o", ca.path]).status == 0)
        let authority = try Self.lanrage(["ca", "pubkey"], input: ca).out.trimmingCharacters(in: .whitespacesAndNewlines)
        let member = try Self.lanrage(["pubkey"], input: key).out.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try Self.lanrage(["ca", "sign", "--key", ca.path, "--party", "home", "--member", member, "--address", "100.64.0.9/32",
                              "-o", certificate.path])
        let control = member
        func write(party: String) throws {
            try """
                [Interface]
                PrivateKeyFile = \(key.path)
                [Party]
                Control = 192.0.2.1:3478
                ControlKey = \(control)
                Name = \(party)
                Authority = \(authority)
                Certificate = \(certificate.path)
                """.write(to: config, atomically: true, encoding: .utf8)
        }
        try write(party: "home")
        let valid = try Self.lanrage(["agent", "--check", "--config", config.path])
        #expect(valid.status == 0 && valid.out.contains("valid: interface lanrage0 port 51820, party home at 192.0.2.1:3478, addresses 100.64.0.9/32"),
                "\(valid)")
        try write(party: "work")
        let invalid = try Self.lanrage(["agent", "--check", "--config", config.path])
        #expect(invalid.status == 78 && invalid.err.contains("Certificate:"), "the certificate is for party home: \(invalid)")
    }

    @Test func helpExitsZero() throws {
        let result = try Self.lanrage(["--help"])
        #expect(result.status == 0)
        #expect(result.out.contains("chart") && result.out.contains("--log-format FORMAT"))
    }
}
