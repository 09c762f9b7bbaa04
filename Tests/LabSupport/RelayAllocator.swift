#if canImport(Glibc)
import Glibc
#endif
import Net
import Rendezvous
import Time

/// Asking a relay for one side of an allocation, blocking with a deadline: for tests and benchmarks
/// (the agent asks without blocking, from its event loop).
public enum RelayAllocator {
    public struct Grant: Sendable, Equatable {
        public var status: RelayMessage.AllocationStatus
        public var endpoint: Endpoint
        public var idleSeconds: UInt16
    }

    /// Sends the token to the relay's service endpoint from `socket` and waits for the answer,
    /// authenticated under `replyKey` (from the offer); `nil` when none came (a bad token is not
    /// answered, a forged answer is ignored). Retries every 300 ms until `timeout`.
    public static func allocate(token: [UInt8], replyKey: [UInt8], service: Endpoint, socket: UDPSocket,
                                timeout: Duration = .seconds(2)) -> Grant? {
        let nonce = Crypto.randomUInt64()
        let request = RelayMessage.allocate(nonce: nonce, token: token).encoded()
        let deadline = MonotonicTime.now() + timeout
        var buffer = [UInt8](repeating: 0, count: 256)
        while MonotonicTime.now() < deadline {
            _ = try? socket.send(request, to: service)
            let retry = min(deadline, MonotonicTime.now() + .milliseconds(300))
            while MonotonicTime.now() < retry {
                guard let ready = try? Readiness.readable([socket.descriptor], timeout: retry - MonotonicTime.now()), !ready.isEmpty else { break }
                while let (count, from) = (try? socket.receive(into: &buffer)) ?? nil {
                    guard from == service,
                          let message = try? buffer.withUnsafeBytes({ try RelayMessage(decoding: UnsafeRawBufferPointer(rebasing: $0[..<count]), key: replyKey) }),
                          case .allocated(let echoed, let status, let port, let idle) = message, echoed == nonce else { continue }
                    return Grant(status: status, endpoint: Endpoint(service.address, port), idleSeconds: idle)
                }
            }
        }
        return nil
    }
}
