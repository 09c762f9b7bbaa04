import EventLoop
import Net
import Punch
import Rendezvous
import Time

/// What a ``PeerExecutor`` keeps for one remote member beside its peer machine: the registry's
/// record, the connection's protocol state, and what the I/O keeps for the peer (`io`).
public struct PeerLink<IOState> {
    public internal(set) var record: MemberRecord
    public let pairKey: PairKey
    public let machine: MachineID
    /// Whether this member's key is the smaller of the pair's (it sets whose turn comes first).
    public let localKeyIsSmaller: Bool
    /// The connection's protocol state and decisions (punch coordination, relay, path).
    public internal(set) var connection = PeerConnection()
    /// When the machine entered its current state (monotonic).
    public internal(set) var stateSince: Nanoseconds
    /// The I/O's own state for the peer (the agent's routes and forwarder, the simulation's member).
    public var io: IOState

    init(record: MemberRecord, pairKey: PairKey, machine: MachineID, localKeyIsSmaller: Bool, now: Nanoseconds, io: IOState) {
        self.record = record
        self.pairKey = pairKey
        self.machine = machine
        self.localKeyIsSmaller = localKeyIsSmaller
        stateSince = now
        self.io = io
    }

    /// The relay allocation granted, if any.
    public var relay: RelayGrant? { connection.relayUse.grant }

    /// The endpoint WireGuard was last pointed at, and what confirms it.
    public var path: PathProbe? { connection.path }

    /// Where to punch: every candidate the peer announced or the server observed, no duplicates.
    public var candidates: [Endpoint] {
        var seen: [Endpoint] = []
        for candidate in record.candidates where !seen.contains(candidate.endpoint) { seen.append(candidate.endpoint) }
        return seen
    }

    /// The peer's WireGuard port as the internet sees it (its first STUN answer), for a peer whose
    /// NAT lets anyone in.
    public var reachable: Endpoint? { record.candidates.first { $0.kind == .reflexive }?.endpoint }

    /// The peer's public address as the control server sees it.
    public var observed: Endpoint? { record.candidates.first { $0.kind == .observed }?.endpoint }
}
