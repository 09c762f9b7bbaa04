import Commands
import Output

/// `lanrage version`
enum VersionCommand {
    static let version = "0.1.0"

    static let command = Command("version", abstract: "Print the LANrage version.") { (_: Invocation) throws(CommandError) -> ExitCode in
        StandardStreams.out("lanrage \(version)\n")
        return .success
    }
}
