import Foundation
import LabSupport
import Net
import Rendezvous
import Testing

/// A member whose certificate grants prefixes that are not its to take — an administrator's mistake,
/// or an authority key in the wrong hands: half the address space, the victim's LAN, another
/// member's address, loopback, a default route. The victim's agent refuses each one (and logs it
/// once), its routes stay byte for byte as they were, the other member keeps its address and
/// subnet, and when members leave exactly the routes the agent added go. (A member cannot claim a
/// prefix without a certificate at all: the control server refuses it, see ControlLoopbackTests.)
@Suite(.enabled(if: Lab.isAvailable, "the lab needs root (network namespaces)"))
struct AgentRoutesLabTests {
    /// The attacker speaks the control protocol itself (a real agent would put these prefixes on its
    /// own interface and cut itself off). Its certificate: the address 100.64.0.9/32, the rest as subnets.
    static let attack = ["128.0.0.0/1", "203.0.113.4/30", "203.0.113.6/32", "203.0.113.0/24", "127.0.0.0/8", "0.0.0.0/0",
                         "100.64.0.2/32", "100.64.0.9/32"]

    @Test func announcedPrefixesNeverTakeOverTheHostsRoutes() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.fullCone), try lab.addSite(.fullCone)]
        let victim = sites[0].client
        let attackerHost = try lab.addHost("attacker", address: IPv4Address(192, 0, 2, 30))
        let party = try PartyLab(lab)
        try party.startControl()
        func routes() throws -> String { try victim.run("ip", "route", "show") + victim.run("ip", "-6", "route", "show") }
        let beforeAgents = try victim.run("ip", "route", "show")
        let lan = try victim.run("ip", "route", "show", "dev", "eth0")
        #expect(lan.contains("203.0.113.4/30 proto kernel scope link src 203.0.113.6"), "\(lan)")

        // A member with an extra subnet nothing on the victim routes: allowed, and routed.
        let agent = try party.startAgent(in: victim, index: 1)
        let member = try party.startAgent(in: sites[1].client, index: 2, subnets: ["198.51.100.128/25"])
        let connected = agent.waitForPeer(member.overlay, within: 40) { $0["state"] as? String == "keepalive" }
        #expect(connected != nil, "\(party.log(of: agent).suffix(4000))")
        let routed = Self.lines(try victim.run("ip", "route", "show", "dev", agent.interface))
        #expect(routed == ["100.64.0.2 proto static scope link", "198.51.100.128/25 proto static scope link"], "\(routed)")
        let beforeAttack = try routes()

        // The attacker joins, certified for it all.
        let attacker = try Attacker(socket: try attackerHost.udpSocket(binding: Endpoint(.v4(IPv4Address(0)), 0)), party: party)
        try attacker.send(.register(cookie: [UInt8](repeating: 0, count: ControlNotice.cookieCount), nat: .unknown, candidates: [],
                                    certificate: try attacker.certificate(party, addresses: ["100.64.0.9/32"],
                                                                          subnets: Self.attack.filter { $0 != "100.64.0.9/32" })))
        let attackerKey = attacker.key.base64
        let joined = Self.waitUntil(10) { (try? victim.run("wg", "show", agent.interface, "peers"))?.contains(attackerKey) == true }
        #expect(joined, "\(party.log(of: agent).suffix(4000))")
        try attacker.send(.heartbeat(revision: 0))
        // Every refusal is logged at once (the peer is decided when it is first seen).
        let refusals = Self.attack.filter { $0 != "100.64.0.9/32" }
        _ = Self.waitUntil(5) { refusals.allSatisfy { Self.refusals(of: $0, by: attacker.key, in: party.log(of: agent)) > 0 } }

        let allowed = Self.allowedIPs(try victim.run("wg", "show", agent.interface, "allowed-ips"))
        #expect(allowed[attackerKey] == ["100.64.0.9/32"], "only the attacker's own overlay address: \(allowed)")
        #expect(allowed[member.key] == ["100.64.0.2/32", "198.51.100.128/25"], "the member keeps its address and subnet: \(allowed)")
        #expect(try victim.run("ip", "route", "show", "dev", "eth0") == lan, "the LAN route, byte for byte")
        let during = try routes()
        #expect(Self.lines(during).filter { !Self.lines(beforeAttack).contains($0) } == ["100.64.0.9 dev \(agent.interface) proto static scope link"],
                "\(during)")
        #expect(Self.lines(beforeAttack).allSatisfy(Self.lines(during).contains), "nothing replaced nor removed: \(during)")
        #expect(agent.ping(member.overlay), "the member is still reached through its own peer")
        let log = party.log(of: agent)
        for prefix in refusals {
            #expect(Self.refusals(of: prefix, by: attacker.key, in: log) == 1, "\(prefix) refused once: \(log.suffix(4000))")
        }
        #expect(Self.refusals(of: "100.64.0.9/32", by: attacker.key, in: log) == 0)
        #expect(log.contains("prefix=203.0.113.4/30 reason=\"overlaps this host's route '203.0.113.4/30 dev eth0 proto kernel scope link'"), "\(log.suffix(4000))")
        #expect(log.contains("prefix=100.64.0.2/32 reason=\"overlaps 100.64.0.2/32, which peer "), "\(log.suffix(4000))")

        // The attacker leaves: its route goes, and the routes are exactly those from before it came.
        try attacker.send(.leave)
        let left = Self.waitUntil(10) { (try? victim.run("wg", "show", agent.interface, "peers"))?.contains(attackerKey) == false }
        #expect(left)
        #expect(try routes() == beforeAttack)

        // The member leaves: its routes go, and the victim's routing table is as before the agents came.
        #expect(member.stop())
        let gone = Self.waitUntil(15) { (try? victim.run("ip", "route", "show", "dev", agent.interface)) == "" }
        #expect(gone, "\(party.log(of: agent).suffix(4000))")
        #expect(try victim.run("ip", "route", "show") == beforeAgents)
        #expect(agent.stop())
        #expect(try victim.run("ip", "route", "show") == beforeAgents)
        party.keepLogs(of: [agent, member], as: "routes", control: true)
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// `wg show … allowed-ips` as key → prefixes.
    static func allowedIPs(_ text: String) -> [String: Set<String>] {
        var result: [String: Set<String>] = [:]
        for line in lines(text) {
            let parts = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).map(String.init)
            if let key = parts.first { result[key] = Set(parts.dropFirst()) }
        }
        return result
    }

    /// How many "prefix refused" lines the agent's log has for `prefix` of `peer`.
    static func refusals(of prefix: String, by peer: MemberKey, in log: String) -> Int {
        log.split(separator: "\n").filter { $0.contains("msg=\"prefix refused\"") && $0.contains("peer=\(peer) prefix=\(prefix) ") }.count
    }

    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    /// A member that only talks to the control server, with a fresh key.
    struct Attacker {
        let socket: UDPSocket
        let server: Endpoint
        let member = Member()
        let controlKey: [UInt8]
        var key: MemberKey { MemberKey(member.publicKey)! }

        init(socket: UDPSocket, party: PartyLab) throws {
            self.socket = socket
            server = party.control
            let serverKey = MemberKey(Data(base64Encoded: party.serverPublicKey).map { [UInt8]($0) } ?? [])!
            controlKey = Keys.controlKey(privateKey: member.privateKey, publicKey: serverKey.bytes, member: MemberKey(member.publicKey)!,
                                         server: serverKey, party: Keys.partyID(name: "lab"))!
        }

        /// A certificate for this member's key, signed with the party's authority (`lanrage ca sign`).
        func certificate(_ party: PartyLab, addresses: [String], subnets: [String]) throws -> [UInt8] {
            let text = try LabSupport.run([Products.lanrage, "ca", "sign", "--key", party.authorityKey.path, "--party", "lab",
                                           "--member", key.base64] + addresses.flatMap { ["--address", $0] } + subnets.flatMap { ["--subnet", $0] })
            return [UInt8](Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? Data())
        }

        func send(_ body: ControlMessage.Body) throws {
            let message = ControlMessage(partyID: Keys.partyID(name: "lab"), timestampMillis: UInt64(Date().timeIntervalSince1970 * 1000),
                                         nonce: UInt64.random(in: 0...UInt64.max), sender: key, body: body)
            _ = try socket.send(message.encoded(key: controlKey), to: server)
        }
    }
}

extension MemberKey {
    /// The key as WireGuard shows it.
    var base64: String { Data(bytes).base64EncodedString() }
}

extension AgentHandle {
    /// The agent's WireGuard public key, as `wg` shows it.
    var key: String { (try? LabSupport.run(["wg", "pubkey"], input: String(contentsOf: directory.appendingPathComponent("private.key"), encoding: .utf8)))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? "" }
}
