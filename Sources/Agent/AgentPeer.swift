import Net
import Peer
import WireGuard

/// What the agent keeps for one peer beside its connection (``PeerLink/io``): its WireGuard key,
/// the forwarder of a fan port, and the routes and allowed IPs `RoutePolicy` decided.
public struct AgentPeer {
    let publicKey: Key
    /// Carries the peer's WireGuard datagrams through the fan port a punch found open (port-restricted
    /// ↔ symmetric); WireGuard's endpoint is then its loopback socket.
    var forwarder: LocalForwarder?
    /// The member's prefixes WireGuard has as the peer's allowed IPs: what `RoutePolicy` accepted.
    var allowedIPs: [IPPrefix] = []
    /// The routes through the interface this agent added for the peer (and removes with it).
    var routes: [IPPrefix] = []
    /// The member's prefixes `RoutePolicy` refused, with the reason logged.
    var refused: [IPPrefix: RoutePolicy.Reason] = [:]

    init(publicKey: Key) { self.publicKey = publicKey }
}

/// One peer of the agent: its connection, and what the agent keeps for it.
typealias AgentLink = PeerLink<AgentPeer>
