#if canImport(Glibc)
import Glibc
#endif
import Net

/// One side of an allocation: its port, the address its token names, the source latched from it.
public struct RelaySide: Sendable {
    public var port: UInt16
    /// Set when this side's token was presented: only datagrams from this IP are accepted.
    public var allowed: IPAddress?
    /// The token that granted this side last: a release must present it.
    var token: [UInt8]?
    /// The source endpoint latched from the first datagram of `allowed` (follows a NAT rebinding
    /// within the same IP).
    public var latched: Endpoint?
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Datagrams dropped on this side's port: from a source the token did not name, or with no
    /// latched destination on the other side yet and not held for it (larger than the held limit,
    /// replaced by a later one, stale, or not wanted: the other side latched with a message of its own).
    public var drops: UInt64 = 0

    init(port: UInt16) { self.port = port }
}

/// A pair's allocation: two ports on the relay, side 0 and side 1; what arrives on one side's port
/// from that side leaves from the other side's port to the other side.
public final class Allocation {
    public let pairID: [UInt8]
    public let partyID: UInt64
    public internal(set) var sides: [RelaySide]
    public internal(set) var lastActivity: Int64
    let sockets: [UDPSocket]
    /// The latched destinations as socket addresses, for the forwarding path (no conversions per packet).
    var destinations: [sockaddr_storage] = [sockaddr_storage(), sockaddr_storage()]
    var destinationLengths: [socklen_t] = [0, 0]
    /// For each side not latched yet, the latest small WireGuard message (not a latch datagram) the
    /// other side sent it, and when: delivered when the side latches with a bare latch datagram. The agent that gets its grant
    /// first sends its WireGuard handshake initiation before the peer has latched; without this it
    /// was lost, and the tunnel waited 300 ms for the peer's own first initiation.
    var held: [(bytes: [UInt8], at: Int64)?] = [nil, nil]
    /// At most this large (a handshake initiation is 148 bytes), and at most this old when delivered.
    static let heldLimit = 256
    static let heldLifetime: Int64 = 5_000_000_000
    /// The shortest WireGuard message (a keepalive); a latch datagram is shorter.
    static let wireGuardMinimum = 32

    init(pairID: [UInt8], partyID: UInt64, sockets: [UDPSocket], now: Int64) {
        self.pairID = pairID
        self.partyID = partyID
        self.sockets = sockets
        sides = sockets.map { RelaySide(port: $0.local.port) }
        lastActivity = now
    }

    /// Sends `datagram` to side `index`'s latched endpoint from side `index`'s port, counted as the
    /// other side's traffic (forwarded, or dropped when the send fails).
    func send(_ datagram: UnsafeRawBufferPointer, to index: Int) {
        let sent = withUnsafePointer(to: &destinations[index]) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(sockets[index].descriptor, datagram.baseAddress, datagram.count, 0, $0, destinationLengths[index])
            }
        }
        let sender = 1 - index
        if sent == datagram.count {
            sides[sender].packets += 1
            sides[sender].bytes += UInt64(datagram.count)
        } else {
            sides[sender].drops += 1
        }
    }

    /// Sets side `index`'s latched endpoint.
    func latch(_ index: Int, _ endpoint: Endpoint) {
        sides[index].latched = endpoint
        endpoint.withSockAddr { address, length in
            withUnsafeMutableBytes(of: &destinations[index]) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(length)))
            }
            destinationLengths[index] = length
        }
    }
}
