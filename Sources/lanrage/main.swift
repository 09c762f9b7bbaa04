import Commands
import CLinux

var arguments = ProcessArguments.current()
// `lanrage --version`, as wg and most tools accept it.
if arguments == ["--version"] { arguments = ["version"] }
exit(LANrage.command.main(arguments, prepare: GlobalOptions.bootstrapLogging))
