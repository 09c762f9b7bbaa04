import Foundation
import LabSupport
import Net
import Testing

/// `lanrage status` exits by the agent's health, for scripts as for `wg show` users: 1 with the
/// reason on standard error while the agent is not registered or a peer has no working tunnel
/// (symmetric ↔ symmetric with no relay in the lab: never connects), 0 when all is well;
/// `--quiet` prints nothing either way.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentStatusExitLabTests {
    /// `lanrage status [extra…]` against `agent`: exit status, standard output, standard error.
    static func status(_ agent: AgentHandle, _ extra: [String] = []) throws -> (status: Int32, out: String, error: String) {
        try LabSupport.execute([Products.lanrage, "status", "--socket", agent.statusSocket] + extra)
    }

    /// Polls `status` until its exit status is `expected` or `seconds` pass; the last result.
    static func waitFor(_ expected: Int32, _ agent: AgentHandle, within seconds: Double) throws -> (status: Int32, out: String, error: String) {
        let deadline = Date().addingTimeInterval(seconds)
        var last = try status(agent)
        while last.status != expected, Date() < deadline {
            usleep(200_000)
            last = try status(agent)
        }
        return last
    }

    @Test func statusExitsByTheAgentsHealth() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.symmetric), try lab.addSite(.symmetric)]
        let party = try PartyLab(lab)
        // The control server is not up yet: the agent runs, unregistered.
        let first = try party.startAgent(in: sites[0].client, index: 1)
        var result = try Self.waitFor(1, first, within: 10)
        #expect(result.status == 1 && result.out.contains("interface: ") && result.error.contains("not registered with the control server"),
                "\(result)")
        result = try Self.status(first, ["--quiet"])
        #expect(result.status == 1 && result.out.isEmpty && result.error.isEmpty, "\(result)")

        // Registered, no peers: all is well.
        try party.startControl()
        result = try Self.waitFor(0, first, within: 20)
        #expect(result.status == 0 && result.error.isEmpty, "\(result) \(party.log(of: first).suffix(2000))")
        #expect(try Self.status(first, ["--quiet", "--json"]).status == 0)

        // A peer that cannot be reached (symmetric ↔ symmetric, no relay in this lab): down, by id.
        let second = try party.startAgent(in: sites[1].client, index: 2)
        #expect(first.waitForPeer(second.overlay, within: 20) { _ in true } != nil)
        result = try Self.waitFor(1, first, within: 20)
        let id = (first.peer(second.overlay)?["id"] as? String) ?? "?"
        #expect(result.status == 1 && result.error.contains("no working tunnel to 1 of 1 peers: \(id)"), "\(result)")
        result = try Self.status(first, ["--quiet"])
        #expect(result.status == 1 && result.out.isEmpty && result.error.isEmpty, "\(result)")
        party.keepLogs(of: [first, second], as: "status-exit", control: true)
    }
}
