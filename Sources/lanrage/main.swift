import Commands
#if canImport(Glibc)
import Glibc
#endif

exit(LANrage.command.main(prepare: GlobalOptions.bootstrapLogging))
