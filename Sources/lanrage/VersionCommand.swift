import CLinux
import Commands
import Output

/// `lanrage version` (also `lanrage --version`): the release, the commit, the architecture and
/// which Swift the binary was built with, so a bug report names the exact build.
enum VersionCommand {
    static let version = "0.1.0"

    static let command = Command("version", abstract: "Print the version, commit, architecture and build kind.") { (_: Invocation) throws(CommandError) -> ExitCode in
        StandardStreams.out("\(text)\n")
        return .success
    }

    /// For example `lanrage 0.1.0 (commit 3bfafa5e1c2d, aarch64, Embedded Swift)`.
    static var text: String {
        let commit = String(cString: lanrage_build_commit())
        return "lanrage \(version) (\(commit.isEmpty ? "commit unknown" : "commit \(commit)"), \(architecture), \(swift))"
    }

    static var architecture: String {
        #if arch(x86_64)
        "x86_64"
        #elseif arch(arm64)
        "aarch64"
        #elseif arch(arm)
        "armv7"
        #else
        "unknown architecture"
        #endif
    }

    static var swift: String {
        #if hasFeature(Embedded)
        "Embedded Swift"
        #else
        "Swift"
        #endif
    }
}
