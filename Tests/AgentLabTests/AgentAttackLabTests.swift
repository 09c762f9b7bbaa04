import Control
import EventLoop
import Foundation
import LabSupport
import Net
import Rendezvous
import STUN
import Testing
import Time

/// The trust findings replayed as attacks against real agents, a real control server and real NATs,
/// with the victims' WireGuard peers, routes and tunnels checked before and after. The attacker is
/// an insider (a member with a valid certificate, speaking the control protocol itself from its own
/// host) or an outsider with nothing but a raw socket. Route hijacking is `AgentRoutesLabTests`, a
/// relay neighbour `RelayNeighbourLabTests`.
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentAttackLabTests {
    static let attackerAddress = IPv4Address(192, 0, 2, 30)

    /// Two agents at restricted-cone sites, connected, and an attacker host on the internet.
    struct Setup {
        let lab: Lab
        let sites: [Site]
        let party: PartyLab
        let agents: [AgentHandle]
        let attackerHost: Namespace

        init(sites kinds: [NATBehaviour] = [.restrictedCone, .restrictedCone], prepare: (Lab) throws -> Void = { _ in }) throws {
            let lab = try Lab()
            self.lab = lab
            do {
                sites = try kinds.map { try lab.addSite($0) }
                attackerHost = try lab.addHost("attacker", address: AgentAttackLabTests.attackerAddress)
                try prepare(lab)
                let party = try PartyLab(lab)
                self.party = party
                try party.startControl()
                let agents = try [party.startAgent(in: sites[0].client, index: 1), party.startAgent(in: sites[1].client, index: 2)]
                self.agents = agents
                for (index, agent) in agents.enumerated() {
                    let peer = agent.waitForPeer(agents[1 - index].overlay, within: 40) { $0["state"] as? String == "keepalive" }
                    guard peer != nil else { throw CommandFailure(command: ["connect"], status: 1, output: party.log(of: agent).suffix(4000).description) }
                }
            } catch {
                lab.shutdown()
                throw error
            }
        }

        /// What a victim's WireGuard and kernel say about its peers and routes, as sorted lines
        /// (wireguard-go lists its peers in no fixed order).
        func snapshot(_ agent: AgentHandle) throws -> [Substring] {
            try (agent.namespace.run(["wg", "show", agent.interface, "endpoints"]) + agent.namespace.run(["wg", "show", agent.interface, "allowed-ips"])
                + agent.namespace.run(["ip", "route", "show"])).split(separator: "\n").sorted()
        }

        /// The control server's counters (SIGHUP makes it log them).
        func controlCounters() -> String {
            guard let process = party.controlProcess else { return "" }
            kill(process.processIdentifier, SIGHUP)
            let log = lab.directory.appendingPathComponent("control.log")
            var last = ""
            _ = poll(3) {
                last = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").last { $0.contains("msg=counters") }.map(String.init) ?? ""
                return !last.isEmpty
            }
            return last
        }
    }

    /// A member with a valid certificate that speaks the control protocol itself, from `namespace`,
    /// on the test's own event loop.
    final class Insider {
        let loop: EventLoop
        let member = Member()
        let client: ControlClient
        let controlKey: [UInt8]
        let serverKey: MemberKey
        var key: MemberKey { MemberKey(member.publicKey)! }

        init(_ party: PartyLab, in namespace: Namespace, nat: NATType = .open, candidates: [Candidate] = []) throws {
            loop = try EventLoop()
            serverKey = MemberKey([UInt8](Data(base64Encoded: party.serverPublicKey)!))!
            let key = MemberKey(member.publicKey)!
            controlKey = Keys.controlKey(privateKey: member.privateKey, publicKey: serverKey.bytes, member: key, server: serverKey,
                                         party: Keys.partyID(name: "lab"))!
            let certificate = try LabSupport.run([Products.lanrage, "ca", "sign", "--key", party.authorityKey.path, "--party", "lab",
                                                  "--member", Data(member.publicKey).base64EncodedString(), "--address", "100.64.0.99/32"])
            var configuration = ControlClient.Configuration(server: party.control, serverKey: serverKey, party: "lab",
                                                            authority: [UInt8](Data(base64Encoded: party.authority)!), key: key,
                                                            certificate: [UInt8](Data(base64Encoded: certificate.trimmingCharacters(in: .whitespacesAndNewlines))!))
            configuration.nat = nat
            configuration.candidates = candidates
            let loop = loop, privateKey = member.privateKey
            client = try namespace.inside { try ControlClient(configuration, privateKey: privateKey, loop: loop) }
        }

        /// Runs the loop until `condition` holds or `seconds` pass.
        @discardableResult
        func spin(_ seconds: Double, until condition: () -> Bool = { false }) throws -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if condition() { return true }
                try loop.run(until: MonotonicTime.nanoseconds() + 20_000_000)
            }
            return condition()
        }

        /// A control message with `sender` as its sender, sealed with this insider's own control key
        /// (the only one it has).
        func forge(_ body: ControlMessage.Body, sender: MemberKey) -> [UInt8] {
            ControlMessage(partyID: Keys.partyID(name: "lab"), timestampMillis: UInt64(Date().timeIntervalSince1970 * 1000),
                           nonce: UInt64.random(in: 0...UInt64.max), sender: sender, body: body).encoded(key: controlKey)
        }
    }

    static func poll(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    /// Counts UDP datagrams arriving at `namespace` (an nftables counter on its input hook).
    static func countArrivals(at namespace: Namespace, name: String) throws {
        try namespace.run(["nft", "-f", "-"], input: """
            table inet \(name) {
              counter arrivals {}
              chain input {
                type filter hook input priority 0; policy accept;
                meta l4proto udp counter name arrivals
              }
            }

            """)
    }

    static func arrivals(at namespace: Namespace, name: String) throws -> Int {
        let output = try namespace.run(["nft", "list", "counter", "inet", name, "arrivals"])
        guard let range = output.range(of: "packets ") else { return -1 }
        return Int(output[range.upperBound...].prefix { $0.isNumber }) ?? -1
    }

    // MARK: Findings 2 and 6: impersonation, speaking as the server, one datagram crashing an agent

    @Test func anInsiderCannotSpeakForAnotherMemberNorAsTheServer() throws {
        let setup = try Setup()
        defer { setup.lab.shutdown() }
        let (victim, other) = (setup.agents[0], setup.agents[1])
        let insider = try Insider(setup.party, in: setup.attackerHost)
        insider.client.start()
        #expect(try insider.spin(10) { insider.client.members.count == 2 })
        let victimKey = try #require(insider.client.members.keys.first { $0.base64 == victim.key })
        let otherKey = try #require(insider.client.members.keys.first { $0.base64 == other.key })
        let otherControl = try #require(insider.client.members[otherKey]?.candidates.first { $0.kind == .observed }?.endpoint)
        // The agents take the insider in (a WireGuard peer, a route to its address) before the attack.
        let insiderKey = insider.key.base64
        #expect(Self.poll(10) { [victim, other].allSatisfy { (try? $0.namespace.run(["wg", "show", $0.interface, "peers"]))?.contains(insiderKey) == true } })
        let before = try [setup.snapshot(victim), setup.snapshot(other)]

        // To the server, as the victim: a leave, a heartbeat from elsewhere, a register moving its candidates.
        let socket = try setup.attackerHost.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        let cookie = [UInt8](repeating: 0, count: ControlNotice.cookieCount)
        for body: ControlMessage.Body in [.leave, .heartbeat(revision: 0),
                                          .register(cookie: cookie, nat: .open, candidates: [Candidate(.reflexive, Endpoint("192.0.2.30:9")!)],
                                                    certificate: insider.client.configuration.certificate)] {
            try socket.send(insider.forge(body, sender: victimKey), to: setup.party.control)
        }
        // To the other member, as the server (its address spoofed): the victim left; a punch at 2^63 + 5 ms.
        let spoofer = try Spoofer(in: setup.attackerHost)
        let victimRecord = try #require(insider.client.members[victimKey])
        for body: ControlMessage.Body in [.member(event: .left, record: victimRecord, revision: 1_000),
                                          .punch(peer: victimRecord.withoutCertificate, startMillis: 1 << 63 + 5)] {
            #expect(spoofer.send(insider.forge(body, sender: insider.serverKey), from: setup.party.control, to: otherControl))
        }
        // The victim stays in the registry (no leave pushed to the insider), every tunnel and route stays.
        try insider.spin(3)
        #expect(insider.client.members[victimKey] != nil, "no leave was pushed")
        #expect(insider.client.members[victimKey]?.candidates.contains(Candidate(.reflexive, Endpoint("192.0.2.30:9")!)) == false)
        #expect(try [setup.snapshot(victim), setup.snapshot(other)] == before, "WireGuard peers, endpoints, allowed IPs and routes unchanged")
        #expect(victim.process?.isRunning == true && other.process?.isRunning == true, "nobody crashed")
        #expect(other.ping(victim.overlay) && victim.ping(other.overlay))
        let counters = setup.controlCounters()
        let unauthenticated = counters.split(separator: " ").first { $0.hasPrefix("unauthenticated=") }.flatMap { Int($0.dropFirst(16)) } ?? 0
        #expect(unauthenticated >= 3, "\(counters)")
        setup.party.keepLogs(of: setup.agents, as: "attack-impersonation", control: true)
    }

    // MARK: Finding 5: a PUNCH replayed from a third address

    @Test func aReplayedPunchChangesNothing() throws {
        var capture: PacketCapture?
        let setup = try Setup { lab in capture = try PacketCapture(in: lab.inet, payloadPrefix: Array("LANRAGE_PUNCH\0".utf8)) }
        defer { setup.lab.shutdown() }
        let other = setup.agents[1]
        let captured = try #require(capture).take().filter { $0.destination.address == .v4(setup.sites[1].publicAddress) }
        #expect(!captured.isEmpty, "PUNCHes to the second site were seen on the internet")
        let before = try setup.snapshot(other)
        try Self.countArrivals(at: setup.attackerHost, name: "replay")
        // Each captured PUNCH, twice, from the attacker's own address.
        let spoofer = try Spoofer(in: setup.attackerHost)
        let replayer = Endpoint(.v4(Self.attackerAddress), 40_000)
        for datagram in captured {
            for _ in 0..<2 { spoofer.send(datagram.payload, from: replayer, to: datagram.destination) }
        }
        _ = Self.poll(2) { false }
        let answers = try Self.arrivals(at: setup.attackerHost, name: "replay")
        let distinct = Set(captured.map(\.payload)).count
        #expect(answers <= distinct, "at most one answer per distinct PUNCH: \(answers) for \(distinct)")
        #expect(try setup.snapshot(other) == before, "the pin and WireGuard's endpoint did not move")
        #expect(other.peer(setup.agents[0].overlay)?["path"] as? String == "direct")
        #expect(other.ping(setup.agents[0].overlay))
        print("AGENT-ATTACK replayed PUNCH: \(captured.count) captured (\(distinct) distinct), replayed twice each, \(answers) answers")
    }

    // MARK: Finding 4: reflection through a member's candidates

    @Test func thirdPartyCandidatesAreProbedWithinTheBudget() throws {
        let setup = try Setup()
        defer { setup.lab.shutdown() }
        let victimHost = try setup.lab.addHost("victim", address: IPv4Address(192, 0, 2, 40))
        try Self.countArrivals(at: victimHost, name: "reflection")
        let claimed = (1...6).map { Candidate(.local, Endpoint(.v4(IPv4Address(192, 0, 2, 40)), UInt16(1000 + $0))) }
            + [Candidate(.reflexive, Endpoint("192.0.2.40:2000")!)]
        let insider = try Insider(setup.party, in: setup.attackerHost, nat: .open, candidates: claimed)
        insider.client.start()
        #expect(try insider.spin(10) { insider.client.members.count == 2 })
        // Punch requests with both agents, every 2 s for 40 s: each starts a new session on both sides.
        let started = Date()
        while Date().timeIntervalSince(started) < 40 {
            for key in insider.client.members.keys { insider.client.requestPunch(with: key) }
            try insider.spin(2)
        }
        let received = try Self.arrivals(at: victimHost, name: "reflection")
        let bound = 2 * 32  // two agents, each 32 PUNCHes a minute to an address that never answered
        #expect(received > 0 && received <= bound, "the third party got \(received) datagrams (bound \(bound))")
        #expect(setup.agents.allSatisfy { $0.process?.isRunning == true })
        print("AGENT-ATTACK third-party candidates: \(received) datagrams in 40 s to the third party (bound \(bound); 7 candidates, 20 punch requests to each of 2 agents)")
    }

    // MARK: Finding 3: spoofed sources flooding the control server

    @Test func aSpoofedFloodLocksNobodyOut() throws {
        let setup = try Setup(sites: [.restrictedCone, .restrictedCone, .portRestrictedCone]) { lab in
            // The internet router forwards what the attacker sends whatever its source (no reverse-path filter).
            for key in ["all", "default", "h30"] { try lab.inet.run(["sysctl", "-qw", "net.ipv4.conf.\(key).rp_filter=0"]) }
        }
        defer { setup.lab.shutdown() }
        let registrations = setup.agents.map { ($0.status()?["control"] as? [String: Any])?["registrations"] as? Int ?? -1 }
        // 16,500 spoofed source endpoints on the lab's addresses, each datagram a well-formed register of
        // a stranger (random key, bad tag) for the lab's party: the costliest junk there is.
        let sources: [Endpoint] = (0..<16_500).map { index in
            let block: [(UInt8, UInt8, UInt8)] = [(198, 51, 100), (203, 0, 113), (192, 0, 2)]
            let (a, b, c) = block[index % 3]
            return Endpoint(.v4(IPv4Address(a, b, c, UInt8(3 + index / 3 % 250))), UInt16(1024 + index))
        }
        let payloads: [[UInt8]] = (0..<256).map { _ in
            var writer = ByteWriter()
            writer.raw([0x4C, 0x43, 2, 0x01]); writer.u64(Keys.partyID(name: "lab")); writer.u64(UInt64(Date().timeIntervalSince1970 * 1000))
            writer.u64(UInt64.random(in: 0...UInt64.max)); writer.raw((0..<32).map { _ in UInt8.random(in: 0...255) })
            writer.u16(20); writer.raw([UInt8](repeating: 0, count: 20))
            return writer.bytes + (0..<32).map { _ in UInt8.random(in: 0...255) }
        }
        let spoofer = try Spoofer(in: setup.attackerHost)
        let sent = Counter()
        let flood = Thread {
            let start = Date()
            var index = 0
            while Date().timeIntervalSince(start) < 30 {
                // 11,000 a second, in slices of 110 every 10 ms.
                let slice = Date()
                for _ in 0..<110 {
                    if spoofer.send(payloads[index % payloads.count], from: sources[index % sources.count], to: Endpoint("192.0.2.1:3478")!) {
                        sent.add()
                    }
                    index += 1
                }
                let spent = Date().timeIntervalSince(slice)
                if spent < 0.01 { usleep(UInt32((0.01 - spent) * 1e6)) }
            }
        }
        let floodStart = Date()
        flood.start()
        // Every member keeps being served, and a newcomer registers within 2 s.
        var newcomer: AgentHandle?
        var joinedAfter: Double?
        var lapses: [String] = []
        while Date().timeIntervalSince(floodStart) < 30 {
            if newcomer == nil, Date().timeIntervalSince(floodStart) > 5 {
                newcomer = try setup.party.startAgent(in: setup.sites[2].client, index: 3)
                let spawned = Date()
                if Self.poll(2) { (newcomer?.status()?["control"] as? [String: Any])?["state"] as? String == "registered" } {
                    joinedAfter = Date().timeIntervalSince(spawned)
                }
            }
            for (index, agent) in setup.agents.enumerated() {
                let control = agent.status()?["control"] as? [String: Any]
                if control?["state"] as? String != "registered" || control?["registrations"] as? Int != registrations[index] {
                    lapses.append("agent \(agent.index) at \(Int(Date().timeIntervalSince(floodStart))) s: \(control ?? [:])")
                }
                if agent.peer(setup.agents[1 - index].overlay)?["state"] as? String != "keepalive" {
                    lapses.append("agent \(agent.index) lost its tunnel at \(Int(Date().timeIntervalSince(floodStart))) s")
                }
            }
            usleep(500_000)
        }
        while flood.isExecuting || !flood.isFinished { usleep(50_000) }
        let rate = Double(sent.value) / 30
        #expect(rate >= 10_000, "the flood reached \(Int(rate)) datagrams a second")
        #expect(lapses.isEmpty, "\(lapses.prefix(10))")
        #expect(joinedAfter != nil, "the newcomer did not register within 2 s: \(setup.party.log(of: newcomer!).suffix(3000))")
        #expect(setup.agents[0].ping(setup.agents[1].overlay))
        let counters = setup.controlCounters()
        // A push lost under the flood is caught up on by an update, without leaving `registered`.
        let updates = setup.agents.map { ($0.status()?["control"] as? [String: Any])?["updates"] as? Int ?? -1 }
        print("AGENT-ATTACK spoofed flood: \(sent.value) datagrams in 30 s (\(Int(rate))/s) from 16,500 source endpoints; "
              + "members served throughout (updates \(updates)), newcomer registered after \(joinedAfter.map { "\(Int($0 * 1000)) ms" } ?? "-"); "
              + "server \(counters)")
    }
}

/// A count shared with a thread.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
