import EventLoop
import Foundation
import LabSupport
import Net
import Testing
@testable import Agent
import Time

/// Who may use the status socket: root, and the `lanrage` group's members when the group exists —
/// `lanrage status` run as nobody (setpriv) is refused with a clear message, and let in with the
/// socket's group.
@Suite(.serialized) struct StatusSocketGroupTests {
    @Test func theGroupIsReadFromTheGroupFile() {
        let text = Array("root:x:0:\nlanrage-old:x:998:\nlanrage:x:4242:alice,bob\nbroken:x:oops:\nnogid:x\n".utf8)
        #expect(SystemGroup.id(named: "lanrage", inText: text[...]) == 4242)
        #expect(SystemGroup.id(named: "broken", inText: text[...]) == nil)
        #expect(SystemGroup.id(named: "nogid", inText: text[...]) == nil)
        #expect(SystemGroup.id(named: "lanrage", in: "/nonexistent/group") == nil)
    }

    /// `lanrage status --socket PATH` as nobody with `groups` (setpriv), while `loop` serves: its exit
    /// status and standard error.
    static func statusAsNobody(_ path: String, groups: [gid_t], loop: EventLoop) throws -> (status: Int32, error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        let groupOption = groups.isEmpty ? ["--clear-groups"] : ["--groups", groups.map(String.init).joined(separator: ",")]
        process.arguments = ["--reuid", "65534", "--regid", "65534"] + groupOption + [Products.lanrage, "status", "--socket", path]
        let error = Pipe()
        process.standardError = error
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { try loop.run(until: SystemClock().now + 20_000_000) }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test(.enabled(if: getuid() == 0, "chown and setpriv need root"))
    func membersOfTheSocketsGroupUseItOthersAreToldWhy() throws {
        let directory = URL(fileURLWithPath: "/tmp/lrsg-\(getpid())")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("agent.sock").path
        let group: gid_t = 4242
        let clock = SystemClock()
        let loop = try EventLoop(clock: clock)
        let server = try StatusServer(path: path, group: group, loop: loop, clock: clock) { _ in
            "registered=yes state=registered problem=- peers=0 down=-\n"
        }
        defer { server.close() }
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_gid == group && info.st_mode & 0o777 == 0o660)

        let refused = try Self.statusAsNobody(path, groups: [], loop: loop)
        #expect(refused.status == 77 && refused.error.contains("permission denied (run as root, or as a member of the 'lanrage' group"),
                "\(refused)")
        let member = try Self.statusAsNobody(path, groups: [group], loop: loop)
        #expect(member.status != 77 && member.status != 69, "\(member)")
    }
}
