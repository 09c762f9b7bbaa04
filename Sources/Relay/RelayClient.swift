import CLinux
import EventLoop
import Net
import Rendezvous
import Time

/// Asks relays for allocations, and gives them back, without blocking the agent's loop: one UDP
/// socket per address family (IPv6 where the host has it), requests resent every 300 ms until 2 s
/// have passed, answers matched by nonce and authenticated with the offer's reply key. Builds the
/// latch datagrams the agent sends from the WireGuard port: the relay forwards a side's traffic
/// only from, and to, the source of its latest authenticated latch. Its sockets and timers are an
/// event loop's (or a simulation's): the owner calls ``readable(_:)`` and fires its timers.
public final class RelayClient: TimerSource {
    private struct Request {
        var offer: RelayOffer
        /// An allocation request (else a release).
        var allocating: Bool
        var bytes: [UInt8]
        var resendAt: Nanoseconds
        var deadline: Nanoseconds
        /// The relay's authenticated answer, or nil when none came in time.
        var done: (RelayMessage?) -> Void
    }

    /// A socket per address family: IPv4 first, then IPv6 where the host has it.
    public let sockets: [(family: Int32, socket: any PortSocket)]
    private var requests: [UInt64: Request] = [:]
    /// The counter of the last latch built.
    private var latchCounter: UInt64 = 0
    static let resend: Nanoseconds = 300_000_000
    static let timeout: Nanoseconds = 2_000_000_000

    private let clock: any TimeSource

    /// A client on `sockets`, one per address family.
    public init(sockets: [(family: Int32, socket: any PortSocket)], clock: any TimeSource) {
        self.sockets = sockets
        self.clock = clock
    }

    /// A client on UDP sockets of its own (IPv6 where the host has it), run by `loop`.
    public convenience init(loop: EventLoop, clock: any TimeSource) throws(SystemError) {
        var sockets: [(family: Int32, socket: any PortSocket)] = [(AF_INET, try UDPSocket(binding: Endpoint(.unspecified(AF_INET), 0)))]
        if let v6 = try? UDPSocket(binding: Endpoint(.unspecified(AF_INET6), 0)) { sockets.append((AF_INET6, v6)) }
        self.init(sockets: sockets, clock: clock)
        for (_, socket) in sockets {
            try loop.register(socket.descriptor) { [unowned(unsafe) self, unowned(unsafe) socket] in self.readable(socket) }
        }
        loop.addTimers(self)
    }

    /// Requests an allocation under `offer`; `done` gets the grant, or `nil` (refused, no answer).
    public func allocate(_ offer: RelayOffer, done: @escaping (RelayGrant?) -> Void) {
        let granted: (RelayMessage?) -> Void = { answer in
            guard case .allocated(_, .granted, let port, _) = answer else { return done(nil) }
            done(RelayGrant(offer: offer, endpoint: Endpoint(offer.service.address, port)))
        }
        // The relay answers a token once, to one nonce: a request with a token already under way
        // (the same offer came twice) joins that request.
        if let (nonce, pending) = requests.first(where: {
            $0.value.allocating && $0.value.offer.token == offer.token && $0.value.offer.service == offer.service
        }) {
            requests[nonce]?.done = { answer in
                pending.done(answer)
                granted(answer)
            }
            return
        }
        let nonce = Crypto.randomUInt64()
        send(RelayMessage.allocate(nonce: nonce, token: offer.token).encoded(), nonce: nonce, under: offer, allocating: true, done: granted)
    }

    /// The latch datagram for `grant`, to send from the WireGuard port to `grant.endpoint`: the relay
    /// then sends the peer's traffic to, and takes this side's traffic only from, the source it came
    /// from. Authenticated with the offer's reply key; each latch has a larger counter than the last
    /// (the wall clock in microseconds, or one more), so the relay takes none twice, and a restarted
    /// agent's latches still count up.
    public func latch(_ grant: RelayGrant) -> [UInt8] {
        latchCounter = max(latchCounter + 1, clock.unixMillis * 1000)
        return RelayMessage.latch(port: grant.endpoint.port, counter: latchCounter).encoded(key: grant.offer.replyKey)
    }

    /// Gives `grant` back: the relay frees the allocation, so nothing more crosses it (WireGuard
    /// follows the source of the latest packet it authenticates, and a relayed one arriving after
    /// the switch to a direct path would take it back to the relay). Sent until the relay answers.
    public func release(_ grant: RelayGrant) {
        let nonce = Crypto.randomUInt64()
        send(RelayMessage.release(nonce: nonce, token: grant.offer.token).encoded(key: grant.offer.replyKey), nonce: nonce,
             under: grant.offer, allocating: false) { _ in }
    }

    private func send(_ bytes: [UInt8], nonce: UInt64, under offer: RelayOffer, allocating: Bool, done: @escaping (RelayMessage?) -> Void) {
        let now = clock.now
        requests[nonce] = Request(offer: offer, allocating: allocating, bytes: bytes, resendAt: now + Self.resend,
                                  deadline: now + Self.timeout, done: done)
        send(bytes, to: offer.service)
    }

    private func send(_ bytes: [UInt8], to service: Endpoint) {
        _ = try? sockets.first { $0.family == service.address.family }?.socket.send(bytes, to: service)
    }

    public var nextDeadline: Nanoseconds? {
        var earliest: Nanoseconds?
        for request in requests.values {
            let due = min(request.resendAt, request.deadline)
            if earliest.map({ due < $0 }) ?? true { earliest = due }
        }
        return earliest
    }

    @discardableResult
    public func fireDueTimers() -> Int {
        let now = clock.now
        var fired = 0
        for (nonce, request) in requests where min(request.resendAt, request.deadline) <= now {
            fired += 1
            if request.deadline <= now {
                requests[nonce] = nil
                request.done(nil)
            } else {
                requests[nonce]?.resendAt = now + Self.resend
                send(request.bytes, to: request.offer.service)
            }
        }
        return fired
    }

    /// Handles the answers `socket` holds, at most ``ReadBatch/datagrams`` of them.
    public func readable(_ socket: any PortSocket) {
        for _ in 0..<ReadBatch.datagrams {
            guard let datagram = (try? socket.receive()) ?? nil else { return }
            let bytes = datagram.payload
            guard bytes.count >= 12 else { continue }
            // The nonce sits right after the 4-byte header; the tag is checked with that request's key.
            var nonce: UInt64 = 0
            for index in 4..<12 { nonce = nonce << 8 | UInt64(bytes[index]) }
            guard let request = requests[nonce], datagram.source == request.offer.service,
                  let message = try? bytes.withBytes({ raw throws(WireError) in try RelayMessage(decoding: raw, key: request.offer.replyKey) })
            else { continue }
            switch message {
            case .allocated(nonce, _, _, _), .released(nonce): break
            default: continue
            }
            requests[nonce] = nil
            request.done(message)
        }
    }
}
