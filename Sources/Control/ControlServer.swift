import CLinux
import EventLoop
import Output
import Net
import Rendezvous
import STUN
import Time

/// `lanrage control` on real sockets: one UDP socket per listen endpoint (one IPv4, one IPv6)
/// serves both the control protocol and STUN (told apart by the first byte: control and relay
/// messages start with 'L', STUN with two zero bits), plus the RFC 5780 sockets when an alternate
/// address of the same family is given. Runs on the event loop; saves the registry when it
/// changed, at most every `saveInterval`.
public final class ControlServer {
    public let core: ControlCore
    public let sockets: [UDPSocket]
    /// One STUN responder per listen endpoint (the one with the alternate answers RFC 5780 tests).
    public let responders: [BindingResponder]
    public let store: StateStore?
    public private(set) var stunAnswered = 0
    public private(set) var saves = 0
    public var logger = Logger(label: "lanrage.control")
    private let clock: any TimeSource
    private var buffer = [UInt8](repeating: 0, count: 2048)
    private var relayTicks = 0

    /// Each listening socket's receive and send buffer: a party of 50 starting at once sends its
    /// registrations and STUN tests in one burst, which overflowed the default 208 KiB (a quarter of
    /// the datagrams were dropped while the server sealed the pushes for the first ones).
    static let socketBuffer: Int32 = 4 << 20

    /// A server listening on each of `listen` (at most one per address family); `alternate`
    /// adds RFC 5780 STUN beside the listen endpoint of its family.
    public init(listen: [Endpoint], alternate: Endpoint?, core: ControlCore, store: StateStore?, loop: EventLoop,
                clock: any TimeSource = SystemClock(), saveInterval: Duration = .milliseconds(200)) throws(SystemError) {
        self.core = core
        self.store = store
        self.clock = clock
        var responders: [BindingResponder] = []
        var sockets: [UDPSocket] = []
        for primary in listen {
            let paired = alternate?.address.family == primary.address.family ? alternate : nil
            var responder = BindingResponder(primary: primary, alternate: paired, software: "lanrage")
            for endpoint in responder.listenEndpoints {
                let socket = try UDPSocket(binding: endpoint)
                socket.enlargeBuffers(to: Self.socketBuffer)
                sockets.append(socket)
            }
            // Port 0: the responder speaks of the port the kernel chose.
            if primary.port == 0 && paired == nil { responder = BindingResponder(primary: sockets[sockets.count - 1].local, alternate: nil, software: "lanrage") }
            responders.append(responder)
        }
        self.responders = responders
        self.sockets = sockets
        for socket in sockets {
            try loop.register(socket.descriptor) { [unowned(unsafe) self, unowned(unsafe) socket] in self.readable(socket) }
        }
        loop.addTimers(Ticker(every: saveInterval, clock: clock) { [unowned(unsafe) self] in self.tick() })
        loop.addTimers(Ticker(every: .seconds(1), clock: clock) { [unowned(unsafe) self] in
            // Every 5 s, and every second while a relay has not answered yet.
            self.relayTicks += 1
            if self.relayTicks % 5 == 0 || self.core.relays.contains(where: { !$0.reported }) { self.queryRelays() }
        })
        queryRelays()
    }

    /// Handles at most ``ReadBatch/datagrams`` datagrams; the rest wait for the next round.
    private func readable(_ socket: UDPSocket) {
        for _ in 0..<ReadBatch.datagrams {
            guard let (count, from) = (try? socket.receive(into: &buffer)) ?? nil else { return }
            if count > 0 && buffer[0] == 0x4C {
                let isRelay = count > 1 && buffer[1] == RelayMessage.magic.1
                let out = buffer.withUnsafeBytes { raw -> [ControlCore.Outgoing] in
                    let datagram = UnsafeRawBufferPointer(rebasing: raw[..<count])
                    if isRelay {
                        core.handleRelayDatagram(datagram, from: from, wall: clock.unixMillis)
                        return []
                    }
                    return core.handle(datagram, from: from, now: clock.now, wall: clock.unixMillis)
                }
                send(out, from: socket)
            } else if let responder = responders.first(where: { $0.listenEndpoints.contains(socket.local) }),
                      let reply = responder.respond(to: Array(buffer[..<count]), from: from, on: socket.local),
                      let out = sockets.first(where: { $0.local == reply.from }) {
                _ = try? out.send(reply.bytes, to: reply.to)
                stunAnswered += 1
            }
        }
    }

    /// Sends each datagram from `socket`, or from the first socket of the destination's address
    /// family when `socket`'s is another.
    private func send(_ out: [ControlCore.Outgoing], from socket: UDPSocket) {
        for datagram in out {
            let family = datagram.to.address.family
            let chosen = socket.local.address.family == family ? socket : sockets.first { $0.local.address.family == family }
            _ = try? chosen?.send(datagram.bytes, to: datagram.to)
        }
    }

    /// Sends what the core produced outside a datagram's handling (pushes after a revocation).
    public func send(_ out: [ControlCore.Outgoing]) { send(out, from: sockets[0]) }

    private func tick() {
        send(core.expireSilent(now: clock.now, wall: clock.unixMillis), from: sockets[0])
        if core.dirty { save() }
    }

    private func queryRelays() {
        send(core.loadQueries(wall: clock.unixMillis), from: sockets[0])
    }

    /// Writes the state now (also called at exit).
    public func save() {
        guard let store else { return }
        do {
            try store.save(StateStore.encode(core.snapshot()))
            core.dirty = false
            saves += 1
        } catch {
            logger.error("state not saved", metadata: ["error": "\(error)"])
        }
    }

    /// One line of counters, for logs (SIGHUP and exit).
    public var summary: Logger.Metadata {
        let c = core.counters
        return Logger.counters([
            ("parties", core.parties.count), ("members", core.parties.values.reduce(0) { $0 + $1.members.count }),
            ("online", core.parties.values.reduce(0) { $0 + $1.onlineCount }),
            ("received", c.received), ("accepted", c.accepted), ("sent", c.sent), ("stun_answered", stunAnswered),
            ("oversized", c.oversized), ("truncated", c.truncated), ("malformed", c.malformed),
            ("bad_version", c.badVersion), ("unknown_party", c.unknownParty), ("unauthenticated", c.unauthenticated),
            ("replayed", c.replayed), ("expired", c.expired), ("rate_limited", c.rateLimited),
            ("cookies_sent", c.cookiesSent), ("refused", c.refused), ("refused_certificates", c.refusedCertificates),
            ("expired_members", c.expiredMembers), ("forgotten_members", c.forgottenMembers),
            ("revoked_members", c.revokedMembers), ("saves", saves),
        ])
    }
}
