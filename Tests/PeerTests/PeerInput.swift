import Peer
import StateChart

/// What the outside world tells a peer machine in the tests, with the data each event carries.
enum PeerInput: Sendable, Equatable {
    case candidatesKnown
    /// Both NATs' behaviour is known; `directPossible` comes from the NAT compatibility table,
    /// `bothReachable` is true when both are open or full cone (no punch needed).
    case natKnown(directPossible: Bool, bothReachable: Bool = false)
    case punchAcked
    case relayReady
    case relayFailed
    /// WireGuard was read: the age of the last handshake (`nil`: none yet), whether the current
    /// path showed a handshake or received data since it was set, and the time since anything was received.
    case wireGuardRead(handshakeAge: Duration?, pathConfirmed: Bool, pathLost: Bool = false)
    case endpointChanged
    case peerLeft

    /// The chart event this input fires.
    var event: PeerEvent {
        switch self {
        case .candidatesKnown: .candidatesKnown
        case .natKnown: .natKnown
        case .punchAcked: .punchAcked
        case .relayReady: .relayReady
        case .relayFailed: .relayFailed
        case .wireGuardRead: .wireGuardRead
        case .endpointChanged: .endpointChanged
        case .peerLeft: .peerLeft
        }
    }

    /// Stores the data the input carries in the context, before its event is handled.
    func apply(to context: inout PeerContext) {
        switch self {
        case .natKnown(let directPossible, let bothReachable):
            context.directPossible = directPossible
            context.bothReachable = bothReachable
        case .wireGuardRead(let handshakeAge, let pathConfirmed, let pathLost):
            context.handshakeAge = handshakeAge
            context.pathConfirmed = pathConfirmed
            context.pathLost = pathLost
        default:
            break
        }
    }
}

extension Machine where Spec == PeerChart {
    /// Handles an input from the outside world: stores its data, then fires its event.
    mutating func receive(_ input: PeerInput) -> Transition<PeerChart>? {
        input.apply(to: &context)
        return handle(input.event)
    }
}
