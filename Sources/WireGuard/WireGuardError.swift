/// A WireGuard operation that failed, with a message a person can act on.
public struct WireGuardError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Neither the kernel module nor a userspace WireGuard is available.
        case unavailable
        /// CAP_NET_ADMIN (or root) is missing.
        case permission
        /// The interface already exists.
        case exists
        /// The interface does not exist.
        case notFound
        /// Input (a key, a config line) is malformed.
        case invalidInput
        /// A configuration file is invalid (the message names file and line).
        case invalidConfig
        /// WireGuard or the kernel refused or failed.
        case failed
        /// A netlink dump was interrupted because the kernel's table changed meanwhile (retried).
        case interrupted
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
