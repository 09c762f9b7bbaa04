import Net
import Time

/// What WireGuard said about one peer when read.
public struct WireGuardReading: Sendable, Equatable {
    /// Where WireGuard sends to the peer: where it was pointed, or the source of the latest packet
    /// it authenticated from the peer.
    public var endpoint: Endpoint?
    /// The last handshake, in wall milliseconds; `nil` for none yet.
    public var lastHandshake: Int64?
    /// Bytes received from the peer.
    public var received: UInt64

    public init(endpoint: Endpoint?, lastHandshake: Int64?, received: UInt64) {
        self.endpoint = endpoint
        self.lastHandshake = lastHandshake
        self.received = received
    }
}

/// The endpoint WireGuard was last pointed at for a peer, and what proves that path works: a
/// handshake since, or data received over it. Only what came over the chosen path counts, and to
/// the millisecond: a handshake through the early relay a moment before the switch, in the same
/// second, proves nothing about the direct path.
public struct PathProbe: Sendable, Equatable {
    /// Where the path goes.
    public private(set) var endpoint: Endpoint
    /// WireGuard has not been given `endpoint` yet: the member with the larger key waits for its
    /// turn on a peer without endpoint nor handshake (see ``holdsBack(fresh:localKeyIsSmaller:)``).
    public private(set) var deferred: Bool
    /// When WireGuard was pointed at `endpoint` (wall milliseconds).
    public private(set) var setAt: Int64
    /// WireGuard's receive counter then: anything above it arrived since.
    public private(set) var receivedAtSet: UInt64

    /// A path to `endpoint`, set at wall time `setAt` with the receive counter at `receivedAtSet`.
    public init(endpoint: Endpoint, setAt: Int64, receivedAtSet: UInt64, deferred: Bool = false) {
        self.endpoint = endpoint
        self.setAt = setAt
        self.receivedAtSet = receivedAtSet
        self.deferred = deferred
    }

    /// A path to `endpoint` chosen at wall time `wall`, with WireGuard's peer as read just before.
    /// The counter is kept from that read: the peer, turning to this path at the same moment, may
    /// have sent its one packet on it already. It counts from 0 when WireGuard roamed there on its
    /// own (an authenticated packet came from it: the path is proven, and what came before counts)
    /// or the peer is added afresh (a new WireGuard peer counts from 0).
    public static func chosen(_ endpoint: Endpoint, at wall: Int64, before: WireGuardReading?, previous: Endpoint?,
                              deferred: Bool) -> PathProbe {
        let roamed = previous != endpoint && before?.endpoint == endpoint
        let counter = roamed || isFresh(before) ? 0 : before?.received ?? 0
        return PathProbe(endpoint: endpoint, setAt: wall, receivedAtSet: counter, deferred: deferred)
    }

    /// A WireGuard peer that never had an endpoint nor a handshake.
    public static func isFresh(_ reading: WireGuardReading?) -> Bool {
        reading.map { $0.endpoint == nil && $0.lastHandshake == nil } ?? false
    }

    /// Whether WireGuard is left without the endpoint until this side's turn: on a fresh peer, the
    /// member with the larger key waits. The smaller key's initiation comes first and is answered
    /// without an endpoint of this side's own, while this side's traffic cannot start a second
    /// initiation that would cross it (both sides would wait as responders).
    public static func holdsBack(fresh: Bool, localKeyIsSmaller: Bool) -> Bool {
        fresh && !localKeyIsSmaller
    }

    /// This side's turn came: WireGuard gets the endpoint now.
    public mutating func release() { deferred = false }

    /// WireGuard was pointed at the endpoint again (set back, or the peer added afresh) at wall
    /// time `wall` with the receive counter at `received`: only what comes after counts.
    public mutating func restart(at wall: Int64, received: UInt64) {
        setAt = wall
        receivedAtSet = received
    }

    /// The peer's NAT rebound on a working path: the path follows WireGuard to `endpoint`.
    public mutating func follow(_ endpoint: Endpoint) { self.endpoint = endpoint }

    /// Whether `reading` shows this path working since it was set. WireGuard's endpoint must be
    /// this one (it follows the source of the latest authenticated packet, so a handshake made
    /// through the relay after the switch leaves it there). Then a handshake since the path was
    /// set confirms it; so does data received since over a session younger than `stale` (one moved
    /// to a new path does not handshake again for up to two minutes), or, with no handshake yet,
    /// anything received — the peer's initiation: this side answered it, and its handshake
    /// completes only with the peer's first packet, which may be lost while the initiator,
    /// complete, sends nothing for 25 s.
    public func confirmed(by reading: WireGuardReading, wall: Int64, stale: Duration) -> Bool {
        guard reading.endpoint == endpoint else { return false }
        let receivedHere = reading.received > receivedAtSet
        guard let handshake = reading.lastHandshake else { return receivedHere }
        return handshake >= setAt || receivedHere && Self.handshakeAge(handshake, wall: wall) < stale
    }

    /// The age of a handshake at wall time `wall`, in whole seconds as WireGuard reports it.
    public static func handshakeAge(_ handshake: Int64, wall: Int64) -> Duration {
        .seconds(max(0, wall / 1000 - handshake / 1000))
    }

    /// What to do when WireGuard's endpoint is not the chosen one.
    public enum Drift: Sendable, Equatable {
        /// Nothing moved, or the path is not the agent's to keep (held back, or forwarded).
        case none
        /// WireGuard followed a late packet to the relay: point it back at the direct endpoint.
        case setBack
        /// The peer moved (a NAT rebinding) on a working path, or sends from another port of the
        /// address pinned: follow it.
        case follow(Endpoint)
    }

    /// On the direct path, WireGuard stays on it. WireGuard follows the source of the latest packet
    /// it authenticates: a packet that crossed the relay before the switch and arrives after it takes
    /// WireGuard back to the relay, and each side, receiving from the relay, keeps sending to it. Such
    /// an endpoint is set back to the direct one at once; any other move is the peer's own, and a
    /// working path (`working`) follows it. So does a path not yet confirmed when the peer fans
    /// (`peerFans`: this side sprays at a symmetric peer) and sends from another port of the address
    /// pinned: its fan usually has several ports the spray hit (about four of 256 for 1,024
    /// guesses), and the peer sends through the one its own pin came by, not necessarily the one
    /// this side pinned. Only its port proves the path. Other moves wait for confirmation: behind
    /// a hairpinning router, another port of the public address is the router's, not the peer's.
    public func drift(_ reading: WireGuardReading, isRelay: (Endpoint) -> Bool, working: Bool, peerFans: Bool = false) -> Drift {
        guard !deferred, let current = reading.endpoint, current != endpoint else { return .none }
        if isRelay(current) { return .setBack }
        return working || peerFans && current.address == endpoint.address ? .follow(current) : .none
    }

    /// The seconds in Direct at which a side whose path is not confirmed asks for a handshake:
    /// 2, 5 and 8 for the member with the smaller key, 3, 6 and 9 for the larger. Two initiations
    /// crossing would leave both sides waiting as responders, so the sides ask at different times
    /// unless they went Direct a second apart. Three asks, not two: at 7 % loss an initiation or its
    /// answer is lost one time in seven, and a side whose peer is idle hears nothing else in the
    /// window.
    public static func asksHandshake(atSecond second: Int64, localKeyIsSmaller: Bool) -> Bool {
        (localKeyIsSmaller ? [2, 5, 8] : [3, 6, 9]).contains(second)
    }
}
