import Commands
import CLinux

exit(LANrage.command.main(prepare: GlobalOptions.bootstrapLogging))
