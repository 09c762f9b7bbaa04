#if canImport(Glibc)
import Glibc
#endif
import EventLoop
import Net
import Rendezvous

/// Asks relays for allocations without blocking the agent's loop: one UDP socket, requests resent
/// every 300 ms until 2 s have passed, answers matched by nonce and authenticated with the offer's
/// reply key. The relay latches a side by its source IP, which the member's NAT shares between
/// this socket and the WireGuard port.
final class RelayClient: TimerSource {
    /// An allocation the relay granted.
    struct Grant: Equatable {
        var service: Endpoint
        /// Where WireGuard sends to reach the peer through the relay.
        var endpoint: Endpoint
    }

    private struct Request {
        var offer: RelayOffer
        var bytes: [UInt8]
        var resendAt: Nanoseconds
        var deadline: Nanoseconds
        var done: (Grant?) -> Void
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
        let bytes = RelayMessage.allocate(nonce: nonce, token: offer.token).encoded()
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
        while let (count, from) = (try? socket.receive(into: &buffer)) ?? nil {
            guard count >= 12 else { continue }
            // The nonce sits right after the 4-byte header; the tag is checked with that request's key.
            var nonce: UInt64 = 0
            for index in 4..<12 { nonce = nonce << 8 | UInt64(buffer[index]) }
            guard let request = requests[nonce], from == request.offer.service,
                  let message = try? buffer.withUnsafeBytes({
                      try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count]), key: request.offer.replyKey)
                  }),
                  case .allocated(let echoed, let status, let port, _) = message, echoed == nonce else { continue }
            requests[nonce] = nil
            request.done(status == .granted ? Grant(service: request.offer.service, endpoint: Endpoint(from.address, port)) : nil)
        }
    }
}
