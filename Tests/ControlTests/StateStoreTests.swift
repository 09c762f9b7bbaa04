import Control
import Foundation
import LabSupport
import Net
import Rendezvous
import Testing

/// The control server's state file: written only as a fresh regular file in a directory no one
/// else can write, and read back only when every field is what the server writes — otherwise a
/// clear error naming the file and the problem, no trap, and the file left as it was.
@Suite(.serialized) struct StateStoreTests {
    /// A fresh state directory (0700), removed by the caller's `defer`.
    static func directory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lrst-\(getpid())-\(name)")
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return url
    }

    /// What `body` threw, as the message a person reads; `nil` when it did not throw.
    static func failure(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    // Hand-made state files, field by field (big-endian), to put any value anywhere.
    static func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    static func u64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }

    static func file(version: UInt8 = 2, _ parties: [[UInt8]]) -> [UInt8] {
        Array("LRST".utf8) + [version] + u16(parties.count) + parties.flatMap { $0 }
    }

    static func party(name: [UInt8] = Array("lan".utf8), revision: UInt64 = 7, members: [[UInt8]] = [member()]) -> [UInt8] {
        let head: [UInt8] = [UInt8(name.count)] + name + [UInt8](repeating: 0xAB, count: 32)
        return head + u64(revision) + u16(members.count) + members.flatMap { $0 }
    }

    /// A member: last seen, key, NAT kind, candidates (kind, family, address, port), certificate
    /// (length, bytes: the state file keeps them as they are; the server checks them at restore).
    static func member(key: UInt8 = 1, nat: UInt8 = 1, candidateCount: UInt8? = nil,
                       candidates: [[UInt8]] = [[1, 4, 203, 0, 113, 1, 0xCA, 0x6C]],
                       certificateLength: Int = 4) -> [UInt8] {
        let head: [UInt8] = u64(1_790_000_000) + [UInt8](repeating: key, count: 32) + [nat, candidateCount ?? UInt8(candidates.count)]
        let tail: [UInt8] = u16(certificateLength) + [UInt8](repeating: 0x4C, count: min(certificateLength, 400))
        return head + candidates.flatMap { $0 } + tail
    }

    @Test func aGoodStateRoundTripsAsA0600File() throws {
        let directory = try Self.directory("good")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = StateStore(directory: directory.path)
        #expect(try store.load().isEmpty, "no file yet: no parties")
        let bytes = Self.file([Self.party(revision: 41, members: [Self.member(key: 1), Self.member(key: 2, nat: 5)]), Self.party(name: Array("ünï".utf8), members: [])])
        try store.save(bytes)
        let parties = try store.load()
        #expect(parties.map(\.name) == ["lan", "ünï"] && parties[0].revision == 41 && parties[0].members.count == 2)
        #expect(StateStore.encode(parties) == bytes)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(!FileManager.default.fileExists(atPath: store.path + ".tmp"))
    }

    @Test func aLinkAtTheTemporaryPathIsNotFollowed() throws {
        let directory = try Self.directory("link")
        let elsewhere = try Self.directory("link-victim")
        defer { try? FileManager.default.removeItem(at: directory); try? FileManager.default.removeItem(at: elsewhere) }
        let victim = elsewhere.appendingPathComponent("victim")
        try Data("precious".utf8).write(to: victim)
        let store = StateStore(directory: directory.path)
        try FileManager.default.createSymbolicLink(atPath: store.path + ".tmp", withDestinationPath: victim.path)
        let bytes = Self.file([Self.party()])
        try store.save(bytes)
        #expect(try Data(contentsOf: victim) == Data("precious".utf8), "the link's target is untouched")
        let type = try FileManager.default.attributesOfItem(atPath: store.path)[.type] as? FileAttributeType
        #expect(type == .typeRegular, "the state is a regular file of its own, not the planted link")
        #expect(try Data(contentsOf: URL(fileURLWithPath: store.path)) == Data(bytes))

        // A link in place of the state file itself is refused, not followed.
        try FileManager.default.removeItem(atPath: store.path)
        try FileManager.default.createSymbolicLink(atPath: store.path, withDestinationPath: victim.path)
        let message = Self.failure { _ = try store.load() }
        #expect(message?.contains(store.path) == true && message?.contains("symbolic link") == true, "\(message ?? "loaded")")
    }

    @Test func aStateDirectoryOthersCanChangeIsRefused() throws {
        let directory = try Self.directory("mode")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = StateStore(directory: directory.path)
        try store.save(Self.file([Self.party()]))
        for (mode, who) in [(0o777, "its group and everyone"), (0o770, "its group"), (0o702, "everyone")] {
            chmod(directory.path, mode_t(mode))
            let loading = Self.failure { _ = try store.load() }
            #expect(loading?.contains("writable by \(who)") == true && loading?.contains("chmod go-w \(directory.path)") == true,
                    "\(String(mode, radix: 8)): \(loading ?? "loaded")")
            #expect(Self.failure { try store.save(Self.file([])) } != nil, "\(String(mode, radix: 8)): saved")
        }
        chmod(directory.path, 0o700)
        #expect(chown(directory.path, 54_321, gid_t(getegid())) == 0)
        let loading = Self.failure { _ = try store.load() }
        #expect(loading?.contains("belongs to uid 54321") == true && loading?.contains("chown") == true, "\(loading ?? "loaded")")
        #expect(Self.failure { try store.save(Self.file([])) } != nil)
        #expect(chown(directory.path, geteuid(), gid_t(getegid())) == 0)
        #expect(try store.load().count == 1, "the state is still there, untouched")
    }

    @Test func aRevisionTheServerCannotCountOnFromIsRefused() throws {
        for revision in [UInt64.max, UInt64(Int64.max) + 1] {
            let message = Self.failure { _ = try StateStore.decode(Self.file([Self.party(revision: revision)])) }
            #expect(message?.contains("party 'lan' has revision \(revision)") == true, "\(message ?? "decoded")")
        }
        #expect(try StateStore.decode(Self.file([Self.party(revision: UInt64(Int64.max))]))[0].revision == UInt64(Int64.max))
    }

    @Test func valuesOutOfRangeAreNamed() throws {
        let cases: [(String, [UInt8], String)] = [
            ("version", Self.file(version: 1, []), "format version is 1"),
            ("magic", Array("LRSX".utf8) + [2, 0, 0], "not a LANrage control state file"),
            ("NAT kind", Self.file([Self.party(members: [Self.member(nat: 200)])]), "member 1 of 1 of party 'lan' (from byte 61) has a value out of range"),
            ("candidate count", Self.file([Self.party(members: [Self.member(candidateCount: 9, candidates: Array(repeating: [1, 4, 1, 2, 3, 4, 0, 1], count: 9))])]),
             "member 1 of 1 of party 'lan'"),
            ("candidate kind", Self.file([Self.party(members: [Self.member(candidates: [[7, 4, 1, 2, 3, 4, 0, 1]])])]), "out of range"),
            ("address family", Self.file([Self.party(members: [Self.member(candidates: [[1, 5, 1, 2, 3, 4, 0, 1]])])]), "out of range"),
            ("certificate length", Self.file([Self.party(members: [Self.member(certificateLength: 2000)])]), "out of range"),
            ("empty name", Self.file([Self.party(name: [], members: [])]), "party 1 of 1 has an empty name"),
            ("not UTF-8", Self.file([Self.party(name: [0xFF, 0xFE], members: [])]), "party 1 of 1 has a name that is not UTF-8"),
            ("two parties", Self.file([Self.party(members: []), Self.party(members: [])]), "party 'lan' appears twice"),
            ("two members", Self.file([Self.party(members: [Self.member(key: 3), Self.member(key: 3)])]), "of party 'lan' appears twice"),
            ("more bytes", Self.file([Self.party()]) + [0, 0, 0], "3 bytes follow the last party"),
        ]
        for (name, bytes, expected) in cases {
            let message = Self.failure { _ = try StateStore.decode(bytes) }
            #expect(message?.contains(expected) == true, "\(name): \(message ?? "decoded")")
        }
    }

    @Test func truncatedAndGarbageFilesAreRefusedAndKept() throws {
        let whole = Self.file([Self.party(revision: 3, members: [Self.member(key: 1), Self.member(key: 2)]), Self.party(name: Array("two".utf8), members: [])])
        #expect(try StateStore.decode(whole).count == 2)
        for length in 0..<whole.count {
            let message = Self.failure { _ = try StateStore.decode(Array(whole[..<length])) }
            #expect(message?.contains("(truncated: \(length) bytes)") == true, "\(length) bytes: \(message ?? "decoded")")
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var bytes = whole
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = Self.failure { _ = try StateStore.decode(bytes) } // refused or decoded, never a trap
        }

        // Through the file: the message names it, and the file stays as it was.
        let directory = try Self.directory("truncated")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = StateStore(directory: directory.path)
        let cut = Data(whole[..<68])
        try cut.write(to: URL(fileURLWithPath: store.path))
        let message = Self.failure { _ = try store.load() }
        #expect(message?.hasPrefix("\(store.path) cannot be restored: it ends in member 1 of 2 of party 'lan'") == true, "\(message ?? "loaded")")
        #expect(message?.contains("move it away") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: store.path)) == cut)
    }

    /// `lanrage control` on a crafted state file (revision UInt64.max) and on a state directory
    /// everyone can write: it exits with the message (no trap) and leaves the file as it was.
    @Test func theServerRefusesToStartOnABadStateAndKeepsIt() throws {
        let directory = try Self.directory("server")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = StateStore(directory: directory.path)
        let crafted = Data(Self.file([Self.party(revision: UInt64.max)]))
        try crafted.write(to: URL(fileURLWithPath: store.path))
        func control() throws -> (Int32, Process.TerminationReason, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Products.lanrage)
            let key = directory.appendingPathComponent("server.key")
            if !FileManager.default.fileExists(atPath: key.path) {
                try (Crypto.base64(TestParty().serverPrivate) + "\n").write(to: key, atomically: true, encoding: .utf8)
                chmod(key.path, 0o600)
            }
            process.arguments = ["control", "--listen", "127.0.0.1:0", "--key", key.path, "--state", directory.path]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            // A server that starts after all is stopped (bounded), and the test says so.
            let pid = process.processIdentifier
            let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
            DispatchQueue.global().asyncAfter(deadline: .now() + 10, execute: watchdog)
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            watchdog.cancel()
            return (process.terminationStatus, process.terminationReason, output)
        }
        var (status, reason, output) = try control()
        #expect(reason == .exit && status == 1, "exited \(status) (\(reason)): \(output)")
        #expect(output.contains(store.path) && output.contains("revision 18446744073709551615"), "\(output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: store.path)) == crafted, "the file is kept as it was")

        try Data(Self.file([Self.party()])).write(to: URL(fileURLWithPath: store.path))
        chmod(directory.path, 0o777)
        (status, reason, output) = try control()
        #expect(reason == .exit && status == 1 && output.contains("chmod go-w \(directory.path)"), "exited \(status): \(output)")
    }
}
