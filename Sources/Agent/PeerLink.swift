import EventLoop
import Net
import Peer
import Punch
import Rendezvous
import WireGuard
import Time

/// What the agent keeps for one remote member beside its peer machine: the registry's record, the
/// punch session and relay grant in use, and what WireGuard last said about the peer.
struct PeerLink {
    var record: MemberRecord
    let publicKey: Key
    let pairKey: PairKey
    let machine: MachineID
    /// The connection's protocol state and decisions (punch coordination, relay, path).
    var connection = PeerConnection()
    /// The WireGuard peer as last read.
    var wireGuard: WireGuard.Peer?
    /// When the machine entered its current state (monotonic).
    var stateSince: Nanoseconds
    /// Carries the peer's WireGuard datagrams through the fan port a punch found open (port-restricted
    /// ↔ symmetric); WireGuard's endpoint is then its loopback socket.
    var forwarder: LocalForwarder?
    /// The member's prefixes WireGuard has as the peer's allowed IPs: what `RoutePolicy` accepted.
    var allowedIPs: [IPPrefix] = []
    /// The routes through the interface this agent added for the peer (and removes with it).
    var routes: [IPPrefix] = []
    /// The member's prefixes `RoutePolicy` refused, with the reason logged.
    var refused: [IPPrefix: RoutePolicy.Reason] = [:]

    init(record: MemberRecord, pairKey: PairKey, machine: MachineID, now: Nanoseconds) {
        self.record = record
        publicKey = Key(bytes: record.key.bytes)!
        self.pairKey = pairKey
        self.machine = machine
        stateSince = now
    }

    /// The relay allocation granted, if any.
    var relay: RelayGrant? { connection.relayUse.grant }

    /// The endpoint WireGuard was last pointed at, and what confirms it.
    var path: PathProbe? { connection.path }

    /// Where to punch: every candidate the peer announced or the server observed, no duplicates.
    var candidates: [Endpoint] {
        var seen: [Endpoint] = []
        for candidate in record.candidates where !seen.contains(candidate.endpoint) { seen.append(candidate.endpoint) }
        return seen
    }

    /// The peer's WireGuard port as the internet sees it (its first STUN answer), for a peer whose
    /// NAT lets anyone in.
    var reachable: Endpoint? { record.candidates.first { $0.kind == .reflexive }?.endpoint }

    /// The peer's public address as the control server sees it.
    var observed: Endpoint? { record.candidates.first { $0.kind == .observed }?.endpoint }
}
