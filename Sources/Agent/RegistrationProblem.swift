import Net
import Output
import Rendezvous

/// Why the agent is not registered with the control server, as it last learned: shown by
/// `lanrage status` (text and JSON) and logged as a warning when it first appears.
enum RegistrationProblem: Equatable {
    /// Rounds of register messages went unanswered: the server is down, unreachable, or drops them.
    case unanswered(rounds: Int)
    /// The server refused this member (its certificate, a revocation, a full party).
    case refused(ControlMessage.Refusal)
    /// The server's clock minus this one, in milliseconds, beyond the ±30 s messages are taken in.
    case clockSkew(offsetMillis: Int64)
    /// The server speaks other protocol versions.
    case protocolVersion(lowest: UInt8, highest: UInt8)
    /// The server's host name does not resolve (why: the resolver's error, as text).
    case unresolved(reason: String)

    /// A short name, as `status --json` gives it.
    var kind: String {
        switch self {
        case .unanswered: "unanswered"
        case .refused: "refused"
        case .clockSkew: "clock_skew"
        case .protocolVersion: "protocol_version"
        case .unresolved: "unresolved"
        }
    }

    /// What is wrong and what to do, for a person reading `lanrage status` or the log.
    func explanation(server: ServerAddress) -> String {
        switch self {
        case .unanswered(let rounds):
            return "the control server \(server) does not answer (\(rounds) rounds of 3 registrations): is it running, "
                + "and does the firewall let UDP to it and back?"
        case .refused(.certificateRefused):
            return "the control server refused this member's certificate: sign it with the party's authority "
                + "(lanrage ca sign) for this party name, within its validity dates"
        case .refused(.revoked):
            return "the party's administrator revoked this member"
        case .refused(.partyFull):
            return "the party is full on the control server"
        case .refused(let refusal):
            return "the control server refused the registration (\(refusal))"
        case .clockSkew(let offset):
            return "this clock is \(Agent.seconds(abs(Double(offset) / 1000))) \(offset > 0 ? "behind" : "ahead of") the control server's: "
                + "messages more than 30 s off are dropped; synchronise the clock (NTP)"
        case .protocolVersion(let lowest, let highest):
            return "the control server speaks protocol version \(lowest == highest ? "\(lowest)" : "\(lowest)-\(highest)"), "
                + "this agent \(ControlMessage.version): upgrade the older of the two"
        case .unresolved(let reason):
            return "the control server's name \(server.name ?? "\(server)") does not resolve: \(reason); "
                + "check the name and the name servers of /etc/resolv.conf"
        }
    }

    /// The problem's fields for `status --json`.
    func json(server: ServerAddress) -> JSON {
        var fields: [(String, JSON)] = [("kind", .string(kind)), ("detail", .string(explanation(server: server)))]
        switch self {
        case .unanswered(let rounds): fields.append(("rounds", .int(Int64(rounds))))
        case .refused(let refusal): fields.append(("refusal", .string("\(refusal)")))
        case .clockSkew(let offset): fields.append(("offset_ms", .int(offset)))
        case .protocolVersion(let lowest, let highest):
            fields.append(("server_versions", .array([.int(Int64(lowest)), .int(Int64(highest))])))
        case .unresolved(let reason): fields.append(("error", .string(reason)))
        }
        return .object(fields)
    }
}
