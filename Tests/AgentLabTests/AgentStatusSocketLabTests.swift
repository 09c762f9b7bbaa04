import Foundation
import LabSupport
import Net
import Testing

/// Slow clients on a real agent's status socket (one byte every 0.4 s, and one that asks for
/// `status json` and never reads it, again and again for 8 s) while the control server expects a
/// heartbeat every second and forgets a member silent for 3 s: the agent keeps its heartbeats,
/// so it is never forgotten and never registers again, and it answers other clients meanwhile.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentStatusSocketLabTests {
    static func control(_ status: [String: Any]?) -> (state: String, registrations: Int)? {
        guard let control = status?["control"] as? [String: Any], let state = control["state"] as? String,
              let registrations = control["registrations"] as? Int else { return nil }
        return (state, registrations)
    }

    @Test func slowStatusClientsDoNotStopTheHeartbeats() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let site = try lab.addSite(.open, verify: false)
        let party = try PartyLab(lab)
        try party.startControl(heartbeat: 1, memberTimeout: 3)
        let agent = try party.startAgent(in: site.client, index: 1)
        var deadline = Date().addingTimeInterval(20)
        while Self.control(agent.status())?.state != "registered" && Date() < deadline { usleep(100_000) }
        let before = try #require(Self.control(agent.status()), "the agent never answered: \(party.log(of: agent).suffix(3000))")
        #expect(before.state == "registered")

        let path = agent.statusSocket
        let until = Date().addingTimeInterval(8)
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while Date() < until {
                    guard let stream = try? UnixStream.connect(path, timeout: .seconds(2)) else { Thread.sleep(forTimeInterval: 0.2); continue }
                    while Date() < until, (try? stream.write([0x73])) != nil { Thread.sleep(forTimeInterval: 0.4) }
                }
            }
        }
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            while Date() < until {
                guard let stream = try? UnixStream.connect(path, timeout: .seconds(2)) else { Thread.sleep(forTimeInterval: 0.2); continue }
                _ = try? stream.write(Array("status json\n".utf8))
                Thread.sleep(forTimeInterval: 1.5)
            }
        }
        // Meanwhile a plain client is answered.
        Thread.sleep(forTimeInterval: 4)
        let during = Self.control(agent.status())
        group.wait()

        deadline = Date().addingTimeInterval(3)
        while Self.control(agent.status())?.state != "registered" && Date() < deadline { usleep(100_000) }
        let after = Self.control(agent.status())
        #expect(during?.state == "registered", "not answered while the slow clients ran, or not registered: \(during?.state ?? "no answer")")
        let registrations = after?.registrations ?? -1
        #expect(after?.state == "registered" && registrations == before.registrations,
                "registered \(before.registrations) times before the slow clients, \(registrations) after: the heartbeats stopped")
        #expect(agent.process?.isRunning == true)
    }
}
