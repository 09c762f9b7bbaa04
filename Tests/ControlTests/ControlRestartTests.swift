import Control
import EventLoop
import Foundation
import LabSupport
import Net
import Rendezvous
import Testing
import Time

/// The real `lanrage control` process, killed with SIGKILL and started again on the same state
/// directory without --party: the party and its members are restored from the state file, and
/// the clients (the library, on their event loop) re-register by themselves.
@Suite(.serialized) struct ControlRestartTests {
    static let localhost = IPAddress.v4(IPv4Address(127, 0, 0, 1))

    func start(_ arguments: [String], log: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Products.lanrage)
        process.arguments = arguments
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Sends STUN binding requests until the server answers (bounded): it is up.
    func waitForServer(_ endpoint: Endpoint, seconds: Double = 5) throws -> Bool {
        let socket = try UDPSocket(binding: Endpoint(Self.localhost, 0))
        let request: [UInt8] = [0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 3, count: 12)
        var buffer = [UInt8](repeating: 0, count: 512)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            try socket.send(request, to: endpoint)
            if !(try Readiness.readable([socket.descriptor], timeout: .milliseconds(100))).isEmpty,
               (try? socket.receive(into: &buffer)) ?? nil != nil { return true }
        }
        return false
    }

    @Test func stateIsRestoredAndMembersComeBackAfterAKill() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lc\(getpid())-restart")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let party = TestParty()
        let keyFile = directory.appendingPathComponent("server.key")
        let serverKeyText = Crypto.base64(party.serverPrivate)
        try (serverKeyText + "\n").write(to: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile.path, 0o600)
        let state = directory.appendingPathComponent("state")
        let log = directory.appendingPathComponent("control.log")
        let port = try { try UDPSocket(binding: Endpoint(Self.localhost, 0)).local.port }()
        let server = Endpoint(Self.localhost, port)
        let common = ["control", "--listen", "\(server)", "--key", keyFile.path, "--state", state.path, "--heartbeat", "1", "--member-timeout", "5"]

        var process = try start(common + ["--party", "lan=\(Crypto.base64(party.authority.publicKey))"], log: log)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        #expect(try waitForServer(server), "control server did not come up")

        let loop = try EventLoop()
        let clock = SystemClock()
        let clients = try (1...3).map { index in
            try ControlClient(party.configuration(party.member(index), server: server), privateKey: party.member(index).privateKey,
                              loop: loop, clock: clock, local: Endpoint(Self.localhost, 0))
        }
        func spin(upTo seconds: Double, until condition: () -> Bool) throws -> Bool {
            let deadline = clock.now + Int64(seconds * 1e9)
            while clock.now < deadline {
                if condition() { return true }
                try loop.run(until: min(deadline, clock.now + 10_000_000))
            }
            return condition()
        }
        for client in clients { client.start() }
        #expect(try spin(upTo: 5) { clients.allSatisfy { $0.state == .registered && $0.members.count == 2 } })

        // The state file holds the party and its three members (written atomically, 0600).
        let store = StateStore(directory: state.path)
        #expect(try spin(upTo: 3) { ((try? store.load())?.first?.members.count ?? 0) == 3 })
        let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(!(try String(contentsOf: log, encoding: .utf8)).contains(serverKeyText), "the server's private key is never logged")

        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let firstEpoch = clients[0].epoch

        // Restarted without --party: everything comes from the state directory.
        process = try start(common, log: log)
        #expect(try waitForServer(server), "control server did not come back")
        let restarted = try String(contentsOf: log, encoding: .utf8)
        #expect(restarted.contains("members=3") && restarted.contains("parties=1"), "restored: \(restarted)")

        // The clients notice (a refused heartbeat or a new epoch) and register again, by themselves.
        #expect(try spin(upTo: 8) {
            clients.allSatisfy { $0.registrations >= 2 && $0.state == .registered && $0.members.count == 2 && $0.epoch != firstEpoch }
        })
        for client in clients {
            #expect(Set(client.members.keys) == Set(clients.filter { $0 !== client }.map(\.configuration.key)))
        }

        // SIGTERM: a clean exit with the counters logged.
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(try String(contentsOf: log, encoding: .utf8).contains("msg=counters"))
    }
}
