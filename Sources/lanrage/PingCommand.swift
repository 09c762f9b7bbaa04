import Agent
import Commands
import Net
import Output
import Time

/// `lanrage ping PEER [--count N] [--socket PATH]`
enum PingCommand {
    static let command = Command(
        "ping",
        abstract: "Ping a peer over the tunnel (ICMP echo to its overlay address) and show the path it took.",
        discussion: "PEER is the peer's overlay address, its public key, or the start of its id as 'lanrage status' shows it.",
        options: [
            StatusCommand.socketOption,
            .value("count", "N", help: "Echo requests to send, one per second.", default: "3"),
        ],
        arguments: [Argument("PEER", help: "Overlay address, public key or id prefix.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        guard let query = try invocation.argument("PEER", as: String.self) else { throw invocation.usageError("missing PEER") }
        let count = try invocation.value("count", as: Int.self) ?? 3
        guard (1...1000).contains(count) else { throw invocation.usageError("--count must be 1 to 1000") }
        let before = try peer(invocation, query)
        guard let text = before["address"], let address = IPv4Address(text) else {
            throw CommandError("peer \(query) has no IPv4 overlay address", exitCode: .unavailable)
        }
        StandardStreams.out("PING \(address) (peer \(before["key"] ?? "?"), \(path(before)))\n")
        let pinger = try failing { () throws(SystemError) in try Pinger(address) }
        var times: [Duration] = []
        for sequence in 1...count {
            let started = MonotonicTime.now()
            if let rtt = try failing({ () throws(SystemError) in try pinger.ping(sequence: UInt16(sequence), timeout: .seconds(1)) }) {
                times.append(rtt)
                StandardStreams.out("reply from \(address): seq=\(sequence) time=\(milliseconds(rtt)) ms\n")
                if sequence < count { _ = try? Readiness.readable([], timeout: .seconds(1) - (MonotonicTime.now() - started)) }
            } else {
                StandardStreams.out("no reply from \(address): seq=\(sequence)\n")
            }
        }
        let after = try peer(invocation, query)
        var summary = "--- \(count) sent, \(times.count) received"
        if let low = times.min(), let high = times.max() {
            let average = times.reduce(Duration.zero, +) / times.count
            summary += ", rtt min/avg/max \(milliseconds(low))/\(milliseconds(average))/\(milliseconds(high)) ms"
        }
        StandardStreams.out("\(summary), path \(path(after))\n")
        return times.isEmpty ? .failure : .success
    }

    private static func peer(_ invocation: Invocation, _ query: String) throws(CommandError) -> [String: String] {
        let answer = try StatusCommand.ask(invocation, "peer \(query)")
        if answer.hasPrefix("error=") {
            throw CommandError(String(answer.dropFirst(6).prefix { $0 != "\n" }), exitCode: .unavailable)
        }
        var fields: [String: String] = [:]
        for pair in answer.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            fields[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return fields
    }

    private static func path(_ fields: [String: String]) -> String {
        switch fields["path"] {
        case "direct": "direct to \(fields["endpoint"] ?? "?")"
        case "relayed": "relayed via \(fields["relay"] ?? "?")"
        default: "no path yet, \(fields["state"] ?? "?")"
        }
    }

    private static func milliseconds(_ duration: Duration) -> String {
        let micros = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        let fraction = String(micros % 1000)
        return "\(micros / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
}
