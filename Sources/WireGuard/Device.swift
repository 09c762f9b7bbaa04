import Net

/// A WireGuard interface as read back from a backend.
public struct Device: Sendable, Equatable {
    public var name: String
    /// Never printed: `show` prints "(hidden)".
    public var privateKey: Key?
    public var publicKey: Key?
    /// 0 when not listening yet.
    public var listenPort: UInt16
    /// 0 when unset.
    public var fwmark: UInt32
    public var peers: [Peer]

    public init(name: String, privateKey: Key? = nil, publicKey: Key? = nil, listenPort: UInt16 = 0, fwmark: UInt32 = 0, peers: [Peer] = []) {
        self.name = name
        self.privateKey = privateKey
        self.publicKey = publicKey
        self.listenPort = listenPort
        self.fwmark = fwmark
        self.peers = peers
    }

    /// The peer with `publicKey`, if configured.
    public func peer(_ publicKey: Key) -> Peer? { peers.first { $0.publicKey == publicKey } }
}

/// A peer of a device, with its counters.
public struct Peer: Sendable, Equatable {
    public var publicKey: Key
    public var presharedKey: Key?
    public var endpoint: Endpoint?
    /// Seconds; 0 is off.
    public var persistentKeepalive: UInt16
    public var allowedIPs: [IPPrefix]
    /// `nil` before the first handshake.
    public var lastHandshake: Timestamp?
    public var rxBytes: UInt64
    public var txBytes: UInt64
    public var protocolVersion: UInt32

    public init(publicKey: Key, presharedKey: Key? = nil, endpoint: Endpoint? = nil, persistentKeepalive: UInt16 = 0,
                allowedIPs: [IPPrefix] = [], lastHandshake: Timestamp? = nil, rxBytes: UInt64 = 0, txBytes: UInt64 = 0,
                protocolVersion: UInt32 = 0) {
        self.publicKey = publicKey
        self.presharedKey = presharedKey
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.allowedIPs = allowedIPs
        self.lastHandshake = lastHandshake
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.protocolVersion = protocolVersion
    }
}

/// Wall-clock time as seconds and nanoseconds since the Unix epoch (as WireGuard reports handshakes).
public struct Timestamp: Sendable, Equatable, Comparable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64, nanoseconds: Int64 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }
}

/// A change to a device: what `WG_CMD_SET_DEVICE` and UAPI `set=1` carry.
/// Only the fields that are not `nil` are changed.
public struct DeviceChange: Sendable, Equatable {
    public var privateKey: Key?
    public var listenPort: UInt16?
    public var fwmark: UInt32?
    /// Remove every peer not listed in `peers`.
    public var replacePeers: Bool
    public var peers: [PeerChange]

    public init(privateKey: Key? = nil, listenPort: UInt16? = nil, fwmark: UInt32? = nil, replacePeers: Bool = false, peers: [PeerChange] = []) {
        self.privateKey = privateKey
        self.listenPort = listenPort
        self.fwmark = fwmark
        self.replacePeers = replacePeers
        self.peers = peers
    }

    /// Whether applying this change would do nothing.
    public var isEmpty: Bool { privateKey == nil && listenPort == nil && fwmark == nil && !replacePeers && peers.isEmpty }
}

/// Adding, updating or removing one peer.
public struct PeerChange: Sendable, Equatable {
    public var publicKey: Key
    /// Remove this peer (other fields are ignored).
    public var remove: Bool
    /// Only update an existing peer; never create it.
    public var updateOnly: Bool
    /// A zero key clears the preshared key.
    public var presharedKey: Key?
    public var endpoint: Endpoint?
    /// 0 turns keepalive off.
    public var persistentKeepalive: UInt16?
    /// Replace the peer's allowed IPs with `allowedIPs` instead of adding to them.
    public var replaceAllowedIPs: Bool
    public var allowedIPs: [IPPrefix]

    public init(publicKey: Key, remove: Bool = false, updateOnly: Bool = false, presharedKey: Key? = nil, endpoint: Endpoint? = nil,
                persistentKeepalive: UInt16? = nil, replaceAllowedIPs: Bool = false, allowedIPs: [IPPrefix] = []) {
        self.publicKey = publicKey
        self.remove = remove
        self.updateOnly = updateOnly
        self.presharedKey = presharedKey
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.replaceAllowedIPs = replaceAllowedIPs
        self.allowedIPs = allowedIPs
    }
}
