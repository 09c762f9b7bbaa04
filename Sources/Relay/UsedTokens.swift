import Rendezvous

/// The tokens the relay answered an allocation request for, each with that request's nonce and
/// answer, kept until the token expires: a token grants its side once. The same request again (the
/// client resends it every 300 ms until answered) gets the same answer and changes nothing; a
/// request with another nonce is a replay. At most `capacity` tokens are kept (beyond that the
/// oldest is forgotten first): in a dictionary for the lookup and in arrival order for the expiry,
/// so an insertion and the evictions it brings cost O(1) amortized, never a scan of the table.
struct UsedTokens {
    /// The request a token was used by, and the answer it got.
    struct Use: Equatable {
        let nonce: UInt64
        let status: RelayMessage.AllocationStatus
        let port: UInt16
    }

    private struct Arrival {
        let tag: [UInt8]
        let expiresAt: UInt64
    }

    let capacity: Int
    private var uses: [[UInt8]: Use] = [:]
    private var arrivals: [Arrival] = []
    private var oldest = 0

    init(capacity: Int) {
        precondition(capacity > 0, "the table holds at least one token")
        self.capacity = capacity
    }

    /// How many tokens are remembered.
    var count: Int { uses.count }

    /// The use of the token whose tag (its HMAC, which tells valid tokens apart) is `tag`, if any.
    func use(of tag: [UInt8]) -> Use? { uses[tag] }

    /// Remembers `use` of a token not used before, until `expiresAt` (seconds since 1970): forgets
    /// first the tokens expired at `nowSeconds` (in arrival order: tokens arrive roughly in the order
    /// they expire), and the oldest when the table is full.
    mutating func insert(_ use: Use, tag: [UInt8], expiresAt: UInt64, nowSeconds: UInt64) {
        while oldest < arrivals.count, arrivals[oldest].expiresAt < nowSeconds || uses.count >= capacity {
            uses[arrivals[oldest].tag] = nil
            oldest += 1
        }
        if oldest > 256, oldest * 2 > arrivals.count {
            arrivals.removeFirst(oldest)
            oldest = 0
        }
        uses[tag] = use
        arrivals.append(Arrival(tag: tag, expiresAt: expiresAt))
    }
}
