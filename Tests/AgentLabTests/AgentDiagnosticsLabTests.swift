import Foundation
import LabSupport
import Net
import Rendezvous
import Testing

/// Why an agent is not registered, told in its log, `lanrage status` (text and JSON) and the
/// status exit: each cause made for real — no control server, a server of another authority, a
/// server whose clock is 120 s ahead (`faketime`), a server speaking another protocol version.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"), .serialized)
struct AgentDiagnosticsLabTests {
    /// The agent's `control.problem` once its kind is `kind` (bounded), with the text status and exit.
    static func waitForProblem(_ kind: String, _ agent: AgentHandle, within seconds: Double)
        -> (problem: [String: Any]?, text: String, exit: (status: Int32, out: String, error: String)?) {
        let deadline = Date().addingTimeInterval(seconds)
        var problem: [String: Any]?
        repeat {
            problem = (agent.status()?["control"] as? [String: Any])?["problem"] as? [String: Any]
            if problem?["kind"] as? String == kind { break }
            usleep(200_000)
        } while Date() < deadline
        let exit = try? AgentStatusExitLabTests.status(agent)
        return (problem, exit?.out ?? "", exit)
    }

    @Test func anUnansweredServerIsNamedAndTheProblemClearsOnRegistration() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone)
        let party = try PartyLab(lab)
        let agent = try party.startAgent(in: site.client, index: 1)
        let found = Self.waitForProblem("unanswered", agent, within: 15)
        #expect(found.problem?["kind"] as? String == "unanswered" && (found.problem?["rounds"] as? Int ?? 0) >= 1, "\(found)")
        #expect(found.text.contains("problem: the control server 192.0.2.1:3478 does not answer"), "\(found.text)")
        #expect(found.exit?.status == 1 && found.exit?.error.contains(", unanswered)") == true, "\(String(describing: found.exit))")
        #expect(party.log(of: agent).contains("not registered: the control server 192.0.2.1:3478 does not answer"))

        try party.startControl()
        let result = try AgentStatusExitLabTests.waitFor(0, agent, within: 30)
        #expect(result.status == 0, "\(result)")
        // `status` asks for its text before the health it exits by: the first exit 0 may come with
        // the text from a moment before the registration.
        let text = try AgentStatusExitLabTests.status(agent)
        #expect(text.status == 0 && !text.out.contains("problem:"), "\(text)")
        let control = agent.status()?["control"] as? [String: Any]
        #expect(control?["problem"] is NSNull && control?["state"] as? String == "registered")
        party.keepLogs(of: [agent], as: "diagnostics-unanswered", control: true)
    }

    @Test func aCertificateTheServerRefusesIsReported() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone)
        let party = try PartyLab(lab)
        // The server knows the party under another authority: this member's certificate is not its.
        let other = lab.directory.appendingPathComponent("other-authority.key")
        try LabSupport.run([Products.lanrage, "ca", "genkey", "-o", other.path])
        let otherAuthority = try LabSupport.run(["sh", "-c", "\(Products.lanrage) ca pubkey < \(other.path)"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try party.startControl(authority: otherAuthority)
        let agent = try party.startAgent(in: site.client, index: 1)
        let found = Self.waitForProblem("refused", agent, within: 15)
        #expect(found.problem?["refusal"] as? String == "certificateRefused", "\(found)")
        #expect(found.text.contains("problem: the control server refused this member's certificate"), "\(found.text)")
        #expect(found.exit?.status == 1 && found.exit?.error.contains(", refused)") == true, "\(String(describing: found.exit))")
        #expect(party.log(of: agent).contains("not registered: the control server refused this member's certificate"))
        party.keepLogs(of: [agent], as: "diagnostics-refused", control: true)
    }

    @Test func aClockTwoMinutesOffIsMeasured() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone)
        let party = try PartyLab(lab)
        // The server's wall clock 120 s ahead; its monotonic clock (timers) untouched. libfaketime
        // preloaded by `env`, which execs: the `faketime` command forks and waits, and stopping it
        // would leave the server running.
        let library = try #require(Self.libfaketime, "libfaketime (Debian's faketime) is not installed")
        try party.startControl(wrapper: ["env", "LD_PRELOAD=\(library)", "FAKETIME=+120s", "FAKETIME_DONT_FAKE_MONOTONIC=1"])
        let agent = try party.startAgent(in: site.client, index: 1)
        let found = Self.waitForProblem("clock_skew", agent, within: 15)
        let offset = found.problem?["offset_ms"] as? Int ?? 0
        #expect((118_000...122_000).contains(offset), "the server's clock minus ours: \(found)")
        #expect(found.text.contains("problem: this clock is 1"), "\(found.text)")
        #expect(found.text.contains("s behind the control server's"), "\(found.text)")
        #expect(found.exit?.status == 1 && found.exit?.error.contains(", clock_skew)") == true, "\(String(describing: found.exit))")
        #expect(party.log(of: agent).contains("not registered: this clock is"))
        party.keepLogs(of: [agent], as: "diagnostics-skew", control: true)
    }

    /// Debian's libfaketime, under the machine's multiarch directory.
    static var libfaketime: String? {
        let lib = URL(fileURLWithPath: "/usr/lib")
        let triplets = (try? FileManager.default.contentsOfDirectory(atPath: lib.path)) ?? []
        return triplets.sorted().map { lib.appendingPathComponent($0).appendingPathComponent("faketime/libfaketime.so.1").path }
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    @Test func aServerOfAnotherProtocolVersionIsReported() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.fullCone)
        let party = try PartyLab(lab)
        // A server of versions 9–9: it answers every datagram with its version notice.
        let notice = ControlNotice.version(lowest: 9, highest: 9).encoded().map { String(format: "%02x", $0) }.joined()
        let script = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("192.0.2.1", 3478))
            for _ in range(10000):
                data, source = s.recvfrom(2048)
                s.sendto(bytes.fromhex("\(notice)"), source)
            """
        _ = try lab.spawn(in: lab.stunHost, ["python3", "-c", script], log: "old-server.log")
        try lab.stunHost.waitForUDPListener(party.control)
        let agent = try party.startAgent(in: site.client, index: 1)
        let found = Self.waitForProblem("protocol_version", agent, within: 15)
        #expect(found.problem?["server_versions"] as? [Int] == [9, 9], "\(found)")
        #expect(found.text.contains("problem: the control server speaks protocol version 9, this agent \(ControlMessage.version)"),
                "\(found.text)")
        #expect(found.exit?.status == 1 && found.exit?.error.contains(", protocol_version)") == true, "\(String(describing: found.exit))")
        #expect(party.log(of: agent).contains("not registered: the control server speaks protocol version 9"))
        party.keepLogs(of: [agent], as: "diagnostics-version")
    }
}
