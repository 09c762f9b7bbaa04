import Net

/// Carries one peer's WireGuard datagrams between WireGuard and the fan port a punch found open.
///
/// The symmetric side of a pair with a port-restricted NAT punches from many extra ports; the
/// peer's guess hits one of them, whose public mapping is the only one the peer's NAT lets in.
/// WireGuard cannot send from that port, so its endpoint for the peer becomes this forwarder's
/// loopback socket: what WireGuard sends there leaves from the fan port toward the peer, and what
/// the peer sends to the fan port is handed to WireGuard. Datagrams from anyone else are dropped.
final class LocalForwarder {
    /// The fan port, facing the peer.
    let outside: UDPSocket
    /// WireGuard's endpoint for the peer (127.0.0.1, a port the kernel chose).
    let inside: UDPSocket
    /// The peer's endpoint, as pinned by the punch.
    let remote: Endpoint
    /// WireGuard's own port on loopback, where the peer's datagrams go.
    let wireGuard: Endpoint
    /// Datagrams carried each way.
    private(set) var toPeer: UInt64 = 0
    private(set) var fromPeer: UInt64 = 0
    private var buffer = [UInt8](repeating: 0, count: 65_536)
    /// Datagrams handled per readiness, so that one busy peer does not starve the loop.
    private static let batch = 64

    init(outside: UDPSocket, remote: Endpoint, wireGuardPort: UInt16) throws(SystemError) {
        self.outside = outside
        self.remote = remote
        wireGuard = Endpoint(.v4(IPv4Address(127, 0, 0, 1)), wireGuardPort)
        inside = try UDPSocket(binding: Endpoint(.v4(IPv4Address(127, 0, 0, 1)), 0))
        inside.enlargeBuffers(to: 1 << 20)
        outside.enlargeBuffers(to: 1 << 20)
    }

    /// Hands WireGuard a datagram the peer sent to the fan port before the forwarder existed.
    func deliver(_ datagram: [UInt8]) {
        if (try? inside.send(datagram, to: wireGuard)) == true { fromPeer += 1 }
    }

    /// WireGuard sent: on to the peer, from the fan port.
    func insideReadable() {
        for _ in 0..<Self.batch {
            guard let (count, from) = (try? inside.receive(into: &buffer)) ?? nil else { return }
            guard from == wireGuard else { continue }
            if buffer.withUnsafeBytes({ try? outside.send(UnsafeRawBufferPointer(rebasing: $0[..<count]), to: remote) }) == true { toPeer += 1 }
        }
    }

    /// The peer sent to the fan port: on to WireGuard.
    func outsideReadable() {
        for _ in 0..<Self.batch {
            guard let (count, from) = (try? outside.receive(into: &buffer)) ?? nil else { return }
            guard from == remote else { continue }
            if buffer.withUnsafeBytes({ try? inside.send(UnsafeRawBufferPointer(rebasing: $0[..<count]), to: wireGuard) }) == true { fromPeer += 1 }
        }
    }
}
