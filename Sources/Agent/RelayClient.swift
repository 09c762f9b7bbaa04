#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import Net
import Rendezvous

/// Asks relays for allocations, and gives them back, without blocking the agent's loop: one UDP
/// socket, requests resent every 300 ms until 2 s have passed, answers matched by nonce and
/// authenticated with the offer's reply key. The relay latches a side by its source IP, which the
/// member's NAT shares between this socket and the WireGuard port.
final class RelayClient: TimerSource {
    /// An allocation the relay granted.
    struct Grant: Equatable {
        /// The offer it was granted under (its token and reply key release it).
        var offer: RelayOffer
        /// Where WireGuard sends to reach the peer through the relay.
        var endpoint: Endpoint

        var service: Endpoint { offer.service }
    }

    private struct Request {
        var offer: RelayOffer
        var bytes: [UInt8]
        var resendAt: Nanoseconds
        var deadline: Nanoseconds
        /// The relay's authenticated answer, or nil when none came in time.
        var done: (RelayMessage?) -> Void
    }

    let socket: UDPSocket
    private var requests: [UInt64: Request] = [:]
    private var buffer = [UInt8](repeating: 0, count: 256)
    static let resend: Nanoseconds = 300_000_000
    static let timeout: Nanoseconds = 2_000_000_000

    init(loop: EventLoop) throws {
        socket = try UDPSocket(binding: Endpoint(.v4(IPv4Address(0)), 0))
        try loop.register(socket.descriptor) { [unowned self] in self.readable() }
        loop.addTimers(self)
    }

    /// Requests an allocation under `offer`; `done` gets the grant, or `nil` (refused, no answer).
    func allocate(_ offer: RelayOffer, done: @escaping (Grant?) -> Void) {
        let nonce = Crypto.randomUInt64()
        send(RelayMessage.allocate(nonce: nonce, token: offer.token).encoded(), nonce: nonce, under: offer) { answer in
            guard case .allocated(_, .granted, let port, _) = answer else { return done(nil) }
            done(Grant(offer: offer, endpoint: Endpoint(offer.service.address, port)))
        }
    }

    /// Gives `grant` back: the relay frees the allocation, so nothing more crosses it (WireGuard
    /// follows the source of the latest packet it authenticates, and a relayed one arriving after
    /// the switch to a direct path would take it back to the relay). Sent until the relay answers.
    func release(_ grant: Grant) {
        let nonce = Crypto.randomUInt64()
        send(RelayMessage.release(nonce: nonce, token: grant.offer.token).encoded(key: grant.offer.replyKey), nonce: nonce,
             under: grant.offer) { _ in }
    }

    private func send(_ bytes: [UInt8], nonce: UInt64, under offer: RelayOffer, done: @escaping (RelayMessage?) -> Void) {
        let now = MonotonicTime.nanoseconds()
        requests[nonce] = Request(offer: offer, bytes: bytes, resendAt: now + Self.resend, deadline: now + Self.timeout, done: done)
        _ = try? socket.send(bytes, to: offer.service)
    }

    var nextDeadline: Nanoseconds? { requests.values.map { min($0.resendAt, $0.deadline) }.min() }

    @discardableResult
    func fireDueTimers() -> Int {
        let now = MonotonicTime.nanoseconds()
        var fired = 0
        for (nonce, request) in requests where min(request.resendAt, request.deadline) <= now {
            fired += 1
            if request.deadline <= now {
                requests[nonce] = nil
                request.done(nil)
            } else {
                requests[nonce]?.resendAt = now + Self.resend
                _ = try? socket.send(request.bytes, to: request.offer.service)
            }
        }
        return fired
    }

    private func readable() {
        for _ in 0..<ReadBatch.datagrams {
            guard let (count, from) = (try? socket.receive(into: &buffer)) ?? nil else { return }
            guard count >= 12 else { continue }
            // The nonce sits right after the 4-byte header; the tag is checked with that request's key.
            var nonce: UInt64 = 0
            for index in 4..<12 { nonce = nonce << 8 | UInt64(buffer[index]) }
            guard let request = requests[nonce], from == request.offer.service,
                  let message = try? buffer.withUnsafeBytes({
                      try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count]), key: request.offer.replyKey)
                  }) else { continue }
            switch message {
            case .allocated(nonce, _, _, _), .released(nonce): break
            default: continue
            }
            requests[nonce] = nil
            request.done(message)
        }
    }
}
