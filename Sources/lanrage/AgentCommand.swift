import Agent
import Commands
import Output

/// `lanrage agent [--config FILE] [--check]`
enum AgentCommand {
    static let command = Command(
        "agent",
        abstract: "Join the party and keep a WireGuard tunnel to every other member: direct where a punch works, relayed elsewhere.",
        discussion: """
            The configuration is a wg-quick style file ([Interface], [Party], [Relay], [Agent]; see the README). \
            The agent creates the WireGuard interface (or adopts an existing one), registers with the control \
            server, detects its NAT with STUN on the WireGuard port, and runs one peer machine per member. Every \
            transition is logged. SIGHUP reloads the configuration; SIGTERM leaves the party, removes the peers, \
            and deletes the interface if the agent created it. 'lanrage status' reads the agent's state.
            """,
        options: [
            .value("config", "FILE", help: "The configuration file.", default: "/etc/lanrage/agent.conf"),
            .flag("check", help: "Check the configuration (its key and certificate files too) and exit: 0 when it is valid, 78 naming the problem when not."),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let path = try invocation.value("config", as: String.self) ?? "/etc/lanrage/agent.conf"
        let configuration = try failing { () throws(AgentConfiguration.Problem) in try AgentConfiguration.load(path) }
        if invocation.flag("check") {
            StandardStreams.out("\(path): valid: interface \(configuration.interfaceName) port \(configuration.listenPort), party "
                                + "\(configuration.party) at \(configuration.control), addresses "
                                + "\(configuration.addresses.map { "\($0)" }.joined(separator: ", "))\n")
            return .success
        }
        let agent = try failing { () throws(AgentFailure) in try Agent(configuration, path: path) }
        try failing { () throws(AgentFailure) in try agent.run() }
        return .success
    }
}
