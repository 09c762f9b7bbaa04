import StateChart

/// The client's side of the control protocol as a chart: register, keep registered with
/// heartbeats, and reconnect with exponential backoff when the server goes silent or forgets us
/// (a restarted server answers `registerAgain`, or a heartbeat ack shows a new epoch).
///
///     idle ─start→ registering ─registered→ registered ─heartbeat due [3 missed]→ registering
///     registering ─attempt timed out [3 attempts]→ backingOff ─backoff elapsed→ registering
///     registered ─resync (new epoch, register again)→ registering
///     registered ─update (new candidates, missed change)→ registered, resent for heartbeats until answered
///     (once a heartbeat or update is found unanswered, the next ones go 2 s apart)
///     registered ─view due [view incomplete]→ registered, the view asked for again a second after an answer
public enum RegistrationChart: ChartSpec {
    public typealias State = RegistrationState
    public typealias Event = RegistrationEvent
    public typealias Action = RegistrationAction
    public typealias Context = RegistrationContext

    static let attemptsLeft = Guard<RegistrationContext>("attempts < 3") { $0.attempts < 3 }
    static let serverSilent = Guard<RegistrationContext>("3 heartbeats missed") { $0.missedHeartbeats >= 3 }
    static let updatePending = Guard<RegistrationContext>("update unanswered") { $0.updatePending }
    static let retryAfterMiss = Duration.seconds(2)
    static let viewIncomplete = Guard<RegistrationContext>("view incomplete, no register out") { $0.viewIncomplete && !$0.updatePending }

    public static let chart: Chart<RegistrationChart> = { () -> Chart<RegistrationChart> in
        let rows: [Row<RegistrationChart>] = [
            Row(.idle, on: .start, to: .registering),
            Row(.registering, on: .registeredAck, to: .registered,
                update: { $0.attempts = 0; $0.failures = 0; $0.missedHeartbeats = 0; $0.updatePending = false }),
            Row(.registering, on: .attemptTimedOut, when: attemptsLeft, to: .registering),
            Row(.registering, on: .attemptTimedOut, to: .backingOff, update: { $0.attempts = 0; $0.failures += 1 }),
            Row(.registering, on: .stop, to: .stopped),
            Row(.backingOff, on: .backoffElapsed, to: .registering),
            Row(.backingOff, on: .stop, to: .stopped),
            Row(.registered, on: .heartbeatDue, when: serverSilent, to: .registering, update: { $0.missedHeartbeats = 0 }),
            // An unanswered update goes again in place of the heartbeat: the server counts either as one.
            Row(.registered, on: .heartbeatDue, when: updatePending, stay: [.sendRegister], update: { $0.missedHeartbeats += 1 }),
            Row(.registered, on: .heartbeatDue, stay: [.sendHeartbeat], update: { $0.missedHeartbeats += 1 }),
            Row(.registered, on: .heartbeatAcked, stay: [], update: { $0.missedHeartbeats = 0 }),
            Row(.registered, on: .update, stay: [.sendRegister], update: { $0.updatePending = true }),
            Row(.registered, on: .registeredAck, stay: [.reportUpdated], update: { $0.updatePending = false; $0.missedHeartbeats = 0 }),
            // A second after an answer, a view still missing records (lost) is asked for again,
            // not a heartbeat later: a member meets the others it missed within seconds.
            Row(.registered, on: .viewDue, when: viewIncomplete, stay: [.sendRegister], update: { $0.updatePending = true }),
            Row(.registered, on: .resync, to: .registering),
            Row(.registered, on: .stop, to: .stopped, do: [.sendLeave]),
        ]
        let states: [StateInfo<RegistrationChart>] = [
            StateInfo(.registering, entry: [.sendRegister], onEntry: { $0.attempts += 1 }),
            StateInfo(.registered, entry: [.reportRegistered]),
            StateInfo(.backingOff, entry: [.reportDisconnected]),
            StateInfo(.stopped, final: true),
        ]
        let timeouts: [Timeout<RegistrationChart>] = [
            Timeout(.registering, after: .fixed(.seconds(1)), fire: .attemptTimedOut),
            Timeout(.backingOff, after: .computed("1s·2ⁿ ≤ 60s") { context in
                .seconds(min(60, 1 << min(context.failures, 6)))
            }, fire: .backoffElapsed),
            // Once a heartbeat (or update) is found unanswered, at the next one's due moment, the
            // next ones go 2 s apart, not a whole interval: the server drops a member it has not
            // heard for 30 s, and its peers close their tunnels to it; three heartbeats lost in a
            // row 10 s apart would be enough.
            Timeout(.registered, every: .computed("heartbeat, 2s after a miss") { context in
                context.missedHeartbeats > 0 ? min(context.heartbeat, retryAfterMiss) : context.heartbeat
            }, fire: .heartbeatDue),
        ]
        do throws(ChartValidationError) {
            return try Chart(name: "registration", initial: .idle, states: states, rows: rows, timeouts: timeouts)
        } catch {
            preconditionFailure("the registration chart is checked by its tests: \(error)")
        }
    }()
}

public enum RegistrationState: Int, ChartState {
    case idle
    /// A register message is out; resent every second, three times, then back off.
    case registering
    case registered
    /// No answer: wait 1 s, 2 s, 4 s … up to 60 s before registering again.
    case backingOff
    case stopped
}

extension RegistrationState: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .idle: "idle"
        case .registering: "registering"
        case .registered: "registered"
        case .backingOff: "backingOff"
        case .stopped: "stopped"
        }
    }
}

public enum RegistrationEvent: Int, ChartEvent {
    case start
    case registeredAck
    case attemptTimedOut
    case heartbeatDue
    case heartbeatAcked
    /// The server forgot us or restarted: register anew.
    case resync
    /// New candidates to tell, or a change missed: register again while registered, until answered.
    case update
    case backoffElapsed
    case stop
    /// A second after a `registered` answer: is its view complete?
    case viewDue
}

extension RegistrationEvent: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .start: "start"
        case .registeredAck: "registeredAck"
        case .attemptTimedOut: "attemptTimedOut"
        case .heartbeatDue: "heartbeatDue"
        case .heartbeatAcked: "heartbeatAcked"
        case .resync: "resync"
        case .update: "update"
        case .backoffElapsed: "backoffElapsed"
        case .stop: "stop"
        case .viewDue: "viewDue"
        }
    }
}

public enum RegistrationAction: Sendable, Hashable {
    case sendRegister
    case sendHeartbeat
    case sendLeave
    case reportRegistered
    /// The server answered a register sent while registered: the record and the view are current.
    case reportUpdated
    /// A round of register messages went unanswered: tell the owner the server is unreachable.
    case reportDisconnected
}

extension RegistrationAction: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .sendRegister: "sendRegister"
        case .sendHeartbeat: "sendHeartbeat"
        case .sendLeave: "sendLeave"
        case .reportRegistered: "reportRegistered"
        case .reportUpdated: "reportUpdated"
        case .reportDisconnected: "reportDisconnected"
        }
    }
}

public struct RegistrationContext: Sendable, Equatable {
    /// Register messages sent in the current round (Registering's entries since the last success or backoff).
    public var attempts = 0
    /// Rounds that ended unanswered since the last success; sets the backoff.
    public var failures = 0
    public var missedHeartbeats = 0
    /// A register sent while registered is not answered yet.
    public var updatePending = false
    /// The last answer's view still misses records.
    public var viewIncomplete = false
    public var heartbeat: Duration = .seconds(10)
    public init() {}
}
