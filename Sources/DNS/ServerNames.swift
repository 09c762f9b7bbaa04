import EventLoop
import Net
import Output
import Time

/// Servers given by host name (the agent's `Control`, `STUN` and `Prefer`, the control server's
/// relays), resolved on the loop: when first asked, again when asked (the server stopped answering:
/// a dynamic-DNS address changed; a reload), and after a failure, every 2 s doubling to a minute
/// until a lookup succeeds. A name keeps its address while a new lookup fails, and while the
/// address is among the new answers (round-robin records do not move it). IPv4 addresses first
/// (A), IPv6 (AAAA) when the name has none; on a host without an IPv4 default route (an IPv6-only
/// line) the other way.
public final class ServerNames {
    /// What is known of one name (a configuration names a handful: a list is enough).
    private struct Entry {
        let name: String
        var address: IPAddress?
        var inFlight = false
        /// Why the last lookup failed, and the delay before the next try; nil after a success.
        var failure: (error: ResolveError, retry: Duration)?
    }

    private let resolver: Resolver
    private let alarms: Alarms
    private let logger: Logger
    private var entries: [Entry] = []
    /// A lookup of a name succeeded; `moved`: it got its first address, or a new one.
    public var onResolved: ((_ name: String, _ moved: Bool) -> Void)?
    /// A name's lookup failed (it is tried again later).
    public var onFailed: ((String, ResolveError) -> Void)?

    static let firstRetry: Duration = .seconds(2)
    static let lastRetry: Duration = .seconds(60)

    public init(resolver: Resolver, alarms: Alarms, logger: Logger) {
        self.resolver = resolver
        self.alarms = alarms
        self.logger = logger
    }

    /// The server's endpoint: its address, or its name's current one (nil before the first answer).
    public func endpoint(_ server: ServerAddress) -> Endpoint? {
        switch server.host {
        case .address(let address): Endpoint(address, server.port)
        case .name(let name): entries.first { $0.name == name }?.address.map { Endpoint($0, server.port) }
        }
    }

    /// Looks `name` up (unless a lookup of it is under way).
    public func resolve(_ name: String) {
        let index = entries.firstIndex { $0.name == name } ?? { entries.append(Entry(name: name)); return entries.count - 1 }()
        guard !entries[index].inFlight else { return }
        entries[index].inFlight = true
        lookUp(index, LocalAddresses.defaultGateway() != nil ? .a : .aaaa, fallback: true)
    }

    /// Asks for `type`; with `fallback`, for the other family's type when the name has no address of this one.
    private func lookUp(_ index: Int, _ type: DNSRecordType, fallback: Bool) {
        resolver.resolve(entries[index].name, type: type) { [unowned(unsafe) self] outcome in
            switch outcome {
            case .success(let found):
                self.entries[index].inFlight = false
                self.found(found.addresses, at: index)
            case .failure(.answered(.noAddress, _)) where fallback:
                self.lookUp(index, type == .a ? .aaaa : .a, fallback: false)
            case .failure(let error):
                self.entries[index].inFlight = false
                self.failed(at: index, error)
            }
        }
    }

    private func found(_ answers: [IPAddress], at index: Int) {
        let name = entries[index].name, old = entries[index].address
        entries[index].failure = nil
        if let old, answers.contains(old) {
            onResolved?(name, false)
            return
        }
        entries[index].address = answers[0]
        if let old {
            logger.notice("server name moved", metadata: ["name": "\(name)", "old": "\(old)", "new": "\(answers[0])"])
        } else {
            logger.info("server name resolved", metadata: ["name": "\(name)", "address": "\(answers[0])"])
        }
        onResolved?(name, true)
    }

    private func failed(at index: Int, _ error: ResolveError) {
        let name = entries[index].name, previous = entries[index].failure
        let retry = previous.map { min($0.retry * 2, Self.lastRetry) } ?? Self.firstRetry
        entries[index].failure = (error, retry)
        let metadata: Logger.Metadata = ["name": "\(name)", "error": "\(error)", "retry_in": "\(retry.components.seconds)s"]
        if previous?.error.description == error.description {
            logger.debug("server name does not resolve", metadata: metadata)
        } else {
            logger.warning("server name does not resolve", metadata: metadata)
        }
        onFailed?(name, error)
        alarms.schedule(after: retry) { [unowned(unsafe) self] in
            // Only while it still fails: a success meanwhile ended the retries.
            if self.entries[index].failure != nil { self.resolve(name) }
        }
    }
}
