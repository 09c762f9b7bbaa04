import CLinux
import Net

/// One side of an allocation: its port, the address its token names, the source latched from it.
public struct RelaySide: Sendable {
    public var port: UInt16
    /// Set when this side's token was presented: only datagrams from this IP are accepted.
    public var allowed: IPAddress?
    /// The token that granted this side last: a release must present it.
    var token: [UInt8]?
    /// The reply keys a latch of this side is authenticated under: the token's that granted it last,
    /// and the one before it (the same address). The member keeps the grant whose answer reached it
    /// last, which need not be the relay's last grant (two answers crossed, or one was lost and its
    /// request resent).
    var latchKeys: [[UInt8]] = []
    /// The counter of the last latch accepted: a latch must carry a larger one (a replayed latch
    /// does nothing).
    var latchCounter: UInt64 = 0
    /// The source of the latest authenticated latch (follows a NAT rebinding within the same IP):
    /// the only source whose datagrams are forwarded, and where the other side's go.
    public var latched: Endpoint?
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Datagrams dropped on this side's port: from any source but the latched one (a neighbour on
    /// the member's IP, the member before it latched), or with no latched destination on the other
    /// side yet and not held for it (larger than the held limit, replaced by a later one, or stale).
    public var drops: UInt64 = 0
    /// Latch datagrams refused on this side's port: from another address than the token's, not
    /// authenticated, for another port, or with a counter not above the last one (replayed).
    public var refusedLatches: UInt64 = 0

    init(port: UInt16) { self.port = port }
}

/// A pair's allocation: two ports on the relay, side 0 and side 1; what arrives on one side's port
/// from that side leaves from the other side's port to the other side.
public final class Allocation {
    public let pairID: [UInt8]
    public let partyID: UInt64
    public internal(set) var sides: [RelaySide]
    public internal(set) var lastActivity: Int64
    /// The relay's address each side's port is bound on: the one of its member's family.
    var addresses: [IPAddress]
    /// Each side's port's handle, as its ``RelayPorts`` opened it.
    var handles: [Int32] = [-1, -1]
    /// The latched destinations as socket addresses, for the forwarding path (no conversions per packet).
    var destinations: [sockaddr_storage] = [sockaddr_storage(), sockaddr_storage()]
    var destinationLengths: [socklen_t] = [0, 0]
    /// For each side not latched yet, the latest small datagram the other side sent it, and when:
    /// delivered when the side latches. The agent that gets its grant first sends its WireGuard
    /// handshake initiation before the peer has latched; without this it would be lost, and the
    /// tunnel would wait for the peer's own first initiation.
    var held: [(bytes: [UInt8], at: Int64)?] = [nil, nil]
    /// At most this large (a handshake initiation is 148 bytes), and at most this old when delivered.
    static let heldLimit = 256
    static let heldLifetime: Int64 = 5_000_000_000

    /// An allocation whose ports (not chosen yet) are bound on `address`.
    init(pairID: [UInt8], partyID: UInt64, address: IPAddress, now: Int64) {
        self.pairID = pairID
        self.partyID = partyID
        addresses = [address, address]
        sides = [RelaySide(port: 0), RelaySide(port: 0)]
        lastActivity = now
    }

    /// Sends `datagram` to side `index`'s latched endpoint from side `index`'s port, counted as the
    /// other side's traffic (forwarded, or dropped when the send fails).
    func send(_ datagram: UnsafeRawBufferPointer, to index: Int, through ports: any RelayPorts) {
        let sent = withUnsafePointer(to: &destinations[index]) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                ports.send(datagram, through: handles[index], to: $0, length: destinationLengths[index])
            }
        }
        let sender = 1 - index
        if sent {
            sides[sender].packets += 1
            sides[sender].bytes += UInt64(datagram.count)
        } else {
            sides[sender].drops += 1
        }
    }

    /// Grants side `index` to `token` (reply key `replyKey`), for datagrams from `address`. A token
    /// naming another address than the side's last one unlatches the side: it latches again, from
    /// the new address, with a latch under the new token's key.
    func grant(_ index: Int, address: IPAddress, token: [UInt8], replyKey: [UInt8]) {
        if sides[index].allowed != address {
            unlatch(index)
            sides[index].latchKeys = [replyKey]
            sides[index].latchCounter = 0
        } else if sides[index].latchKeys.first != replyKey {
            sides[index].latchKeys = [replyKey] + sides[index].latchKeys.prefix(1)
        }
        sides[index].allowed = address
        sides[index].token = token
    }

    /// Side `index` has no latched endpoint: nothing is sent to it, nothing from it is forwarded.
    private func unlatch(_ index: Int) {
        sides[index].latched = nil
        destinations[index] = sockaddr_storage()
        destinationLengths[index] = 0
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
