/// Shell-style exit statuses (the BSD `sysexits.h` values where one fits).
public enum ExitCode: Int32, Sendable {
    case success = 0
    /// A general failure: the command ran and what it was asked to do did not happen.
    case failure = 1
    /// The command line was wrong: unknown option, bad value, missing argument.
    case usage = 64
    /// Input data was malformed (a config file, a key, a packet).
    case dataError = 65
    /// An input file does not exist or cannot be read.
    case noInput = 66
    /// A host name does not resolve.
    case noHost = 68
    /// A service the command needs is not there (no WireGuard, no answer from a server).
    case unavailable = 69
    /// An internal error: a bug in LANrage.
    case software = 70
    /// Reading or writing failed.
    case ioError = 74
    /// The command lacks a privilege it needs (root, CAP_NET_ADMIN, CAP_NET_RAW).
    case noPermission = 77
    /// A configuration is invalid.
    case config = 78
}

/// An error that knows which exit status it should end the program with.
public protocol ExitCodeProviding: Error {
    var exitCode: ExitCode { get }
}
