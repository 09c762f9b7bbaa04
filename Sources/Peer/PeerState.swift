import StateChart

/// Where a connection to one remote peer stands.
public enum PeerState: Int, ChartState {
    /// Asking the control server for the peer's candidates (local addresses, reflexive endpoint).
    case discovering
    /// Learning both NATs' behaviour, to decide whether a direct path is worth trying.
    case detecting
    /// Sending authenticated LANRAGE_PUNCH bursts to every candidate, waiting for an ACK.
    case punching
    /// A punch was answered: WireGuard points at the pinned endpoint; waiting for its handshake.
    case direct
    /// No direct path: WireGuard points at a relay allocation; waiting for its handshake.
    case relaying
    /// The tunnel works (direct or relayed); watching WireGuard's handshakes, upgrading relays.
    case keepalive
    /// The peer left the party: its WireGuard peer and relay allocation are gone.
    case closed
}

extension PeerState: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .discovering: "discovering"
        case .detecting: "detecting"
        case .punching: "punching"
        case .direct: "direct"
        case .relaying: "relaying"
        case .keepalive: "keepalive"
        case .closed: "closed"
        }
    }
}

/// What can happen to a peer connection. Timer events come from the chart's timeouts.
public enum PeerEvent: Int, ChartEvent {
    /// The control server sent the peer's candidates.
    case candidatesKnown
    /// Timer: no candidates yet — ask again.
    case discoveryRetry
    /// Both NAT behaviours are known (see ``PeerContext/directPossible``).
    case natKnown
    /// Timer: NAT detection took too long — punch anyway.
    case detectionTimeout
    /// Timer: send the next packet of the punch burst.
    case punchTick
    /// An authenticated PUNCH or PUNCH_ACK arrived from a candidate: its address is pinned.
    case punchAcked
    /// Timer: no ACK within the ACK timeout after the burst.
    case punchTimeout
    /// Timer: read WireGuard's last handshake.
    case livenessTick
    /// WireGuard was read (see ``PeerContext/handshakeAge`` and ``PeerContext/pathConfirmed``).
    case wireGuardRead
    /// Timer: a new direct path did not produce a handshake in time.
    case confirmTimeout
    /// The relay granted an allocation.
    case relayReady
    /// The relay refused or is unreachable.
    case relayFailed
    /// Timer: the relayed path did not produce a handshake in time.
    case relayTimeout
    /// The peer's candidates changed (new public address, new port).
    case endpointChanged
    /// Timer: time to try upgrading a relayed path to a direct one.
    case upgradeDue
    /// The peer left the party.
    case peerLeft
}

extension PeerEvent: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .candidatesKnown: "candidatesKnown"
        case .discoveryRetry: "discoveryRetry"
        case .natKnown: "natKnown"
        case .detectionTimeout: "detectionTimeout"
        case .punchTick: "punchTick"
        case .punchAcked: "punchAcked"
        case .punchTimeout: "punchTimeout"
        case .livenessTick: "livenessTick"
        case .wireGuardRead: "wireGuardRead"
        case .confirmTimeout: "confirmTimeout"
        case .relayReady: "relayReady"
        case .relayFailed: "relayFailed"
        case .relayTimeout: "relayTimeout"
        case .endpointChanged: "endpointChanged"
        case .upgradeDue: "upgradeDue"
        case .peerLeft: "peerLeft"
        }
    }
}

/// What the agent must do for a peer connection. The data each action needs is in the
/// machine's context and in the agent's own tables (candidates, pinned endpoint, relay).
public enum PeerAction: Sendable, Hashable {
    /// Ask the control server for the peer's candidates and a punch start time.
    case requestCandidates
    /// Run (or reuse) NAT behaviour discovery on the WireGuard port.
    case detectNAT
    /// Begin a punch burst (entering Punching): on the attempt's first burst, a new session with
    /// the peer (the coordinated one when the control server gave a start time); then as `sendPunch`.
    case startPunch
    /// Send one authenticated LANRAGE_PUNCH to every candidate, from the WireGuard port.
    case sendPunch
    /// The punch attempt is over: its fan ports close (a fan port that won carries on in a forwarder).
    case endPunch
    /// Learn this side's public endpoint and NAT type again: a lost path may mean a new public address.
    case rediscoverNAT
    /// Point the WireGuard peer at the pinned endpoint.
    case setDirectEndpoint
    /// Ask a relay for an allocation for this pair (or reuse the one granted while detecting:
    /// the early relay carries traffic while the direct path is sought).
    case allocateRelay
    /// Point the WireGuard peer at the relay allocation.
    case setRelayEndpoint
    /// Give the relay allocation back.
    case releaseRelay
    /// Set WireGuard's persistent keepalive for the peer (25 s by default).
    case enableKeepalive
    /// Read the WireGuard peer's last handshake and counters.
    case readHandshake
    /// Remove the WireGuard peer.
    case removePeer
}

extension PeerAction: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .requestCandidates: "requestCandidates"
        case .detectNAT: "detectNAT"
        case .startPunch: "startPunch"
        case .sendPunch: "sendPunch"
        case .endPunch: "endPunch"
        case .rediscoverNAT: "rediscoverNAT"
        case .setDirectEndpoint: "setDirectEndpoint"
        case .allocateRelay: "allocateRelay"
        case .setRelayEndpoint: "setRelayEndpoint"
        case .releaseRelay: "releaseRelay"
        case .enableKeepalive: "enableKeepalive"
        case .readHandshake: "readHandshake"
        case .removePeer: "removePeer"
        }
    }
}
