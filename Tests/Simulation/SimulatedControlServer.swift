import Control
import EventLoop
import Net
import Rendezvous
import Time

/// The control server on the simulated Internet: the real `ControlCore` on a host's socket, as
/// `ControlServer` runs it — registrations with certificates the party's authority signed,
/// pushes, heartbeats, punch announcements with their join window, relay offers with tokens for
/// the relay (``SimulatedRelayServer``) — its silent members expired every 200 ms, its relay asked
/// for its load every 5 s. A restart
/// loses what was not saved (the server saves its registry at most 200 ms after a change; here
/// at the moment of the restart), is down for a while (datagrams to it are lost), and comes back
/// with another epoch and the registry restored: every member offline until it registers again.
///
/// The core iterates its tables in hash order: a seed replays exactly only with the same hash
/// seed in every process (`SWIFT_DETERMINISTIC_HASHING=1`, which `make` sets).
final class SimulatedControlServer {
    static let endpoint = Endpoint("192.0.2.10:3478")!
    static let partyName = "simulation"

    let relay: SimulatedRelayServer
    let serverKey: MemberKey
    private let privateKey: [UInt8]
    private let authority: (publicKey: [UInt8], secretKey: [UInt8])
    private(set) var core: ControlCore
    private let socket: SimulatedSocket
    /// Until when the server is down after a restart: datagrams arriving before then are lost.
    private var downUntil: Nanoseconds = 0
    private unowned let network: SimulatedNetwork

    init(on network: SimulatedNetwork) {
        self.network = network
        privateKey = network.random.key()
        serverKey = MemberKey(Crypto.publicKey(ofPrivate: privateKey))!
        authority = Crypto.signingKeyPair(seed: network.random.key())
        relay = SimulatedRelayServer(on: network, key: network.random.key())
        core = Self.core(privateKey: privateKey, relayKey: relay.key, authority: authority.publicKey, restoring: [], network: network)
        guard case .v4(let address) = Self.endpoint.address else { preconditionFailure("the simulated network is IPv4") }
        socket = network.addHost("control", address: address).socket(port: Self.endpoint.port)
        socket.onReadable = { [unowned self] in readable() }
        network.add(Ticker(every: .milliseconds(200), clock: network.clock) { [unowned self] in
            guard isUp else { return }
            send(core.expireSilent(now: network.clock.now, wall: network.clock.unixMillis))
        })
        network.add(Ticker(every: .seconds(5), clock: network.clock) { [unowned self] in
            guard isUp else { return }
            send(core.loadQueries(wall: network.clock.unixMillis))
        })
    }

    /// A core of another epoch with the party, its registry restored from `saved`.
    private static func core(privateKey: [UInt8], relayKey: [UInt8], authority: [UInt8], restoring saved: [StateStore.SavedParty],
                             network: SimulatedNetwork) -> ControlCore {
        let core = ControlCore(privateKey: privateKey, relays: [SimulatedRelayServer.service], relayKey: relayKey,
                               epoch: network.random.next(), now: network.clock.now)
        core.restore(saved, wall: network.clock.unixMillis)
        if saved.isEmpty { core.addParty(name: partyName, authority: authority, wall: network.clock.unixMillis) }
        return core
    }

    /// What `member`'s control client is configured with: this server, the party, and a
    /// certificate the authority issued for the member's key, valid a day around now, granting
    /// the member an overlay address of its own.
    func configuration(for member: SimulatedMember) -> ControlClient.Configuration {
        let key = MemberKey(member.publicKey)!
        let now = network.clock.unixSeconds
        let number = member.index + 1
        let overlay = IPPrefix(.v4(IPv4Address(100, 64, UInt8(truncatingIfNeeded: number >> 8), UInt8(truncatingIfNeeded: number))), 32)!
        let certificate = try! MemberCertificate.issue(party: Keys.partyID(name: Self.partyName), member: key, notBefore: now - 86_400,
                                                       notAfter: now + 86_400, addresses: [overlay], subnets: [], name: member.name,
                                                       authority: authority.secretKey)
        return ControlClient.Configuration(server: Self.endpoint, serverKey: serverKey, party: Self.partyName, authority: authority.publicKey,
                                           key: key, certificate: certificate.encoded)
    }

    /// The relay's pair of the members `a` and `b` (as relay tokens name it).
    func pair(_ a: MemberKey, _ b: MemberKey) -> [UInt8] { Keys.pairID(party: Keys.partyID(name: Self.partyName), a, b) }

    /// The server restarts: down for `down`, then another epoch with the registry as saved now.
    func restart(down: Duration) {
        let saved = (try? StateStore.decode(StateStore.encode(core.snapshot()))) ?? []
        downUntil = network.clock.now + down.nanoseconds
        network.after(down) { [unowned self] in
            core = Self.core(privateKey: privateKey, relayKey: relay.key, authority: authority.publicKey, restoring: saved, network: network)
            network.note("control is up again, epoch \(core.epoch)")
        }
    }

    private var isUp: Bool { network.clock.now >= downUntil }

    private func readable() {
        while let datagram = try? socket.receive() {
            guard isUp else {
                network.note("control is down: a datagram from \(datagram.source) is lost")
                continue
            }
            // A relay's answer to a load query ("LR"), else a member's message.
            if datagram.payload.count > 1, datagram.payload[0] == RelayMessage.magic.0, datagram.payload[1] == RelayMessage.magic.1 {
                datagram.payload.withUnsafeBytes { core.handleRelayDatagram($0, from: datagram.source, wall: network.clock.unixMillis) }
                continue
            }
            let out = datagram.payload.withUnsafeBytes { raw in
                core.handle(raw, from: datagram.source, now: network.clock.now, wall: network.clock.unixMillis)
            }
            send(out)
        }
    }

    private func send(_ out: [ControlCore.Outgoing]) {
        for datagram in out { _ = try? socket.send(datagram.bytes, to: datagram.to) }
    }
}
