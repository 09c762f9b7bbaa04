import Net

/// How much one peer's punching may send to addresses that have not answered it. A member's record
/// names its candidates, and anyone can claim any address: without a bound, a member listing a third
/// party's addresses (or a PUNCH replayed from one) would make every other agent punch it, and a
/// symmetric side's fan and a port-restricted side's spray send over a thousand datagrams per
/// attempt. So, per peer and per minute:
/// - an address that has not answered gets at most ``perAddress`` PUNCHes (ten a punch attempt,
///   a few attempts a minute), and at most ``addressLimit`` such addresses are punched at all;
/// - the peer's public address as the control server saw it (where its messages come from) gets
///   ``observedAllowance``: the fan and the spray go there only;
/// - an address that answered (an authenticated ACK echoing one of this side's nonces) is not limited.
public struct ProbeBudget: Sendable {
    public static let window: Int64 = 60_000_000_000
    public static let perAddress = 32
    public static let addressLimit = 16
    public static let observedAllowance = 4096
    static let verifiedMemory = 8

    /// The peer's public address as the control server saw it.
    public var observed: IPAddress?
    private var windowStart: Int64
    private var spent: [IPAddress: Int] = [:]
    private var verified: [IPAddress] = []
    /// PUNCHes not sent for want of budget.
    public private(set) var withheld = 0

    public init(observed: IPAddress?, now: Int64) {
        self.observed = observed
        windowStart = now
    }

    /// Whether one more PUNCH may go to `address` at `now` (monotonic ns); counts it when it may.
    public mutating func allow(_ address: IPAddress, now: Int64) -> Bool {
        if verified.contains(address) { return true }
        if now - windowStart >= Self.window {
            windowStart = now
            spent = [:]
        }
        let limit = address == observed ? Self.observedAllowance : Self.perAddress
        let used = spent[address] ?? 0
        guard used < limit, spent[address] != nil || spent.count < Self.addressLimit else {
            withheld += 1
            return false
        }
        spent[address] = used + 1
        return true
    }

    /// `address` answered one of this side's PUNCHes: no limit for it from now on.
    public mutating func verify(_ address: IPAddress) {
        guard !verified.contains(address) else { return }
        if verified.count == Self.verifiedMemory { verified.removeFirst() }
        verified.append(address)
    }
}
