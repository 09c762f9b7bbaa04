import Commands

/// The `lanrage` command tree: one file per subcommand beside this one.
enum LANrage {
    static let command = Command(
        "lanrage",
        abstract: "NAT traversal for WireGuard: punch direct paths between party members, relay where none exists.",
        options: GlobalOptions.options,
        subcommands: [
            ChartCommand.command,
            PunchCommand.command,
            VersionCommand.command,
            StunServerCommand.command,
            NetcheckCommand.command,
            KeyCommands.genkey,
            KeyCommands.genpsk,
            KeyCommands.pubkey,
            WGCommand.command,
            CACommand.command,
            ControlCommand.command,
            RelayCommand.command,
            AgentCommand.command,
            StatusCommand.command,
            PingCommand.command,
        ]
    )
}
