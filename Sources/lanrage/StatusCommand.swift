import CLinux
import Commands
import Net
import Output

/// `lanrage status [--json] [--quiet] [--socket PATH]`
enum StatusCommand {
    static let socketOption = Option.value("socket", "PATH", help: "The agent's status socket.", default: "/var/run/lanrage/agent.sock")

    static let command = Command(
        "status",
        abstract: "Show the running agent's state: its NAT and public endpoint, and per peer the state, path, endpoint, handshake and transfer. "
            + "Exits 0 when the agent is registered and every peer has a working tunnel, 1 otherwise (saying why on standard error).",
        options: [
            socketOption,
            .flag("json", help: "Print JSON instead of text."),
            .flag("quiet", help: "Print nothing: only the exit status tells (for scripts)."),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let quiet = invocation.flag("quiet")
        if !quiet { StandardStreams.out(try ask(invocation, invocation.flag("json") ? "status json" : "status")) }
        let problems = health(try ask(invocation, "health"))
        if !quiet { for problem in problems { StandardStreams.error("lanrage: \(problem)\n") } }
        return problems.isEmpty ? .success : .failure
    }

    /// What is wrong by the agent's `health` answer: not registered, peers without a working tunnel.
    static func health(_ answer: String) -> [String] {
        var fields: [Substring: Substring] = [:]
        for word in answer.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard let equals = word.firstIndex(of: "=") else { continue }
            fields[word[..<equals]] = word[word.index(after: equals)...]
        }
        guard let registered = fields["registered"], let peers = fields["peers"], let down = fields["down"] else {
            return ["the agent's answer is not understood: \(answer.prefix(80))"]
        }
        var problems: [String] = []
        if registered != "yes" {
            let problem = fields["problem"].flatMap { $0 == "-" ? nil : ", \($0)" } ?? ""
            problems.append("not registered with the control server (\(fields["state"] ?? "?")\(problem))")
        }
        if down != "-" {
            let ids = down.split(separator: ",")
            problems.append("no working tunnel to \(ids.count) of \(peers) peers: \(ids.joined(separator: ", "))")
        }
        return problems
    }

    /// Sends one request line to the agent and returns its answer.
    static func ask(_ invocation: Invocation, _ request: String) throws(CommandError) -> String {
        let path = try invocation.value("socket", as: String.self) ?? "/var/run/lanrage/agent.sock"
        do throws(SystemError) {
            let stream = try UnixStream.connect(path)
            try stream.write(Array("\(request)\n".utf8))
            return String(decoding: try stream.read(), as: UTF8.self)
        } catch where error.errno == EACCES {
            throw CommandError("cannot use the agent's status socket \(path): permission denied (run as root, or as a member of "
                               + "the 'lanrage' group, which the agent gives the socket when the group exists)", exitCode: .noPermission)
        } catch {
            throw CommandError("cannot reach the agent at \(path): \(error) (is 'lanrage agent' running? see --socket)", exitCode: .unavailable)
        }
    }
}
