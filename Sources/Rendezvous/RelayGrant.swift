import Net

/// An allocation a relay granted: the offer it was granted under (its token and reply key release
/// it) and where WireGuard sends to reach the peer through the relay.
public struct RelayGrant: Equatable, Sendable {
    public var offer: RelayOffer
    public var endpoint: Endpoint

    public init(offer: RelayOffer, endpoint: Endpoint) {
        self.offer = offer
        self.endpoint = endpoint
    }

    /// The relay's allocation service.
    public var service: Endpoint { offer.service }
}
