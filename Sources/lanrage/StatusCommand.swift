import Commands
import Net
import Output

/// `lanrage status [--json] [--socket PATH]`
enum StatusCommand {
    static let socketOption = Option.value("socket", "PATH", help: "The agent's status socket.", default: "/run/lanrage/agent.sock")

    static let command = Command(
        "status",
        abstract: "Show the running agent's state: its NAT and public endpoint, and per peer the state, path, endpoint, handshake and transfer.",
        options: [
            socketOption,
            .flag("json", help: "Print JSON instead of text."),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let json = invocation.flag("json")
        StandardStreams.out(try ask(invocation, json ? "status json" : "status"))
        return .success
    }

    /// Sends one request line to the agent and returns its answer.
    static func ask(_ invocation: Invocation, _ request: String) throws(CommandError) -> String {
        let path = try invocation.value("socket", as: String.self) ?? "/run/lanrage/agent.sock"
        do throws(SystemError) {
            let stream = try UnixStream.connect(path)
            try stream.write(Array("\(request)\n".utf8))
            return String(decoding: try stream.read(), as: UTF8.self)
        } catch {
            throw CommandError("cannot reach the agent at \(path): \(error) (is 'lanrage agent' running? see --socket)", exitCode: .unavailable)
        }
    }
}
