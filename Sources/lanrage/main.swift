import Commands
import CLinux
import Output

guard var arguments = ProcessArguments.current() else {
    StandardStreams.error("lanrage: cannot read its command line from /proc/self/cmdline: is /proc mounted?\n")
    exit(ExitCode.unavailable.rawValue)
}
// `lanrage --version`, as wg and most tools accept it.
if arguments == ["--version"] { arguments = ["version"] }
exit(LANrage.command.main(arguments, prepare: GlobalOptions.bootstrapLogging))
