import Net
import Rendezvous

/// The relay allocation a connection holds or is asking for: the grant, whether it is the early
/// relay (granted while detecting or punching, carrying traffic while the direct path is sought),
/// and the offers not tried yet.
public struct RelayUse: Sendable, Equatable {
    /// The allocation granted, if any.
    public private(set) var grant: RelayGrant?
    /// The grant came while detecting or punching, or it is the pair's allocation moved while
    /// relayed in Keepalive: Relaying takes it over.
    public private(set) var early = false
    /// Offers of the last answer not tried yet, best first.
    public private(set) var offers: [RelayOffer] = []

    /// The states that ask for a relay: Relaying, and Detecting and Punching for the early relay.
    public static let states: Set<PeerState> = [.detecting, .punching, .relaying]

    public init() {}

    /// What `allocateRelay` does.
    public enum Allocation: Sendable, Equatable {
        /// Relaying takes over the early relay: it is ready.
        case reuse
        /// Ask the control server for relay offers for the pair.
        case request
        /// Nothing: relays are off, or the early relay is the other member's to ask for, or paused.
        case none
    }

    /// `allocateRelay` in `state`. The early relay granted while detecting or punching carries on
    /// into Relaying; otherwise what was held is dropped and offers are asked for. The control
    /// server sends the offers to both members: for the early relay the member with the smaller key
    /// asks alone (and not while early relays are paused, after a relay refused one); in Relaying
    /// both ask (one may have lost the other's request).
    public mutating func allocate(in state: PeerState, enabled: Bool, localKeyIsSmaller: Bool, earlyPaused: Bool) -> Allocation {
        if state == .relaying, grant != nil, early {
            early = false
            return .reuse
        }
        grant = nil
        early = false
        offers = []
        let isEarly = state != .relaying
        guard enabled, !isEarly || localKeyIsSmaller && !earlyPaused else { return .none }
        return .request
    }

    /// What an answer with offers leads to.
    public enum Next: Sendable, Equatable {
        /// Not wanted now (another state, or a relay held already).
        case ignore
        /// Ask this relay for an allocation.
        case allocate(RelayOffer)
        /// No offer left: the relay failed.
        case failed
    }

    /// The control server's offers for the pair, in `state`: preferred relays first (in their
    /// order), then the server's (by load). With a relay held (in the states that ask for one, or
    /// relayed in Keepalive), offers mean the peer asks anew (its path lost: a relay restarted, say):
    /// this side asks the same relay, and gets the pair's allocation as it is now (``granted(_:in:)``).
    public mutating func offered(_ offers: [RelayOffer], preferred: [Endpoint], in state: PeerState) -> Next {
        guard wants(in: state), grant == nil || !offers.isEmpty else { return .ignore }
        let first = preferred.compactMap { service in offers.first { $0.service == service } }
        self.offers = first + offers.filter { !preferred.contains($0.service) }
        return next()
    }

    /// The next offer to try after one refused or unanswered.
    public mutating func next() -> Next {
        guard !offers.isEmpty else { return .failed }
        return .allocate(offers.removeFirst())
    }

    /// What a grant leads to.
    public enum Granted: Sendable, Equatable {
        /// The relay is ready to use (`relayReady`).
        case ready
        /// The allocation held, with a newer token: kept, nothing changes.
        case kept
        /// Not wanted any more (the connection left the states that ask for a relay): left alone.
        case unwanted
    }

    /// A relay granted `grant` while the connection was in `state`. The allocation held may come
    /// back with a newer token (kept: a release must present it). Relayed in Keepalive, another
    /// endpoint is the pair's allocation moved, for Relaying to take over.
    public mutating func granted(_ grant: RelayGrant, in state: PeerState) -> Granted {
        guard wants(in: state) else { return .unwanted }
        // Both members asked and both offers were tried, or the peer asked anew: the same allocation.
        let held = self.grant?.endpoint == grant.endpoint
        self.grant = grant
        if held { return .kept }
        early = state != .relaying
        return .ready
    }

    /// Whether offers and grants are wanted in `state`: in the states that ask for a relay, and
    /// relayed in Keepalive (a relay held).
    private func wants(in state: PeerState) -> Bool {
        Self.states.contains(state) || state == .keepalive && grant != nil
    }

    /// Gives the allocation up: returns it, to be released at the relay.
    public mutating func release() -> RelayGrant? {
        defer { grant = nil }
        return grant
    }
}
