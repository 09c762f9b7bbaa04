import CLinux
import CSodium
import EventLoop
import Net
import Time

/// Why a lookup found no address.
public enum ResolveError: Error, Sendable, CustomStringConvertible {
    /// A name server answered with no address (no such name, none of that family, a failure).
    case answered(DNSError, server: Endpoint)
    /// No name server answered in time (every round over all of them).
    case unanswered(servers: [Endpoint])
    /// No socket toward the name server could be opened.
    case system(SystemError)

    public var description: String {
        switch self {
        case .answered(let error, let server): "\(error) (from \(server))"
        case .unanswered(let servers): "no answer from \(servers.map { $0.description }.joined(separator: ", "))"
        case .system(let error): error.description
        }
    }
}

/// Host names to addresses on the event loop, never blocking it: the hosts file first, then a
/// DNS question over UDP to the name servers of `/etc/resolv.conf` (those of the first one's
/// address family), one after another, each given its `timeout`, for `attempts` rounds — what
/// glibc's stub resolver does, without NSS (the binary is static) and without a thread. A lookup has its own socket on a random port and a
/// random ID, and takes only an answer from a name server it asked that echoes its question.
/// Answers cut short (TC) are not retried over TCP: an address record fits a datagram.
public final class Resolver: TimerSource {
    /// A lookup's outcome: the addresses (in the answer's order) and how long they may be kept.
    public typealias Outcome = Result<(addresses: [IPAddress], ttl: Duration), ResolveError>

    private struct Lookup {
        let descriptor: Int32
        let query: DNSQuery
        let socket: UDPSocket
        let servers: [Endpoint]
        let timeout: Duration
        let tries: Int
        var sent = 0
        var deadline: Nanoseconds = 0
        let done: (Outcome) -> Void
    }

    private let loop: EventLoop
    private let clock: any TimeSource
    private let configuration: () -> ResolverConfiguration
    /// Lookups under way; at most `lookupLimit`.
    private var lookups: [Lookup] = []
    private var buffer = [UInt8](repeating: 0, count: 1232)
    static let lookupLimit = 16
    /// How long an address from the hosts file is kept (the file is read again after that).
    static let hostsTTL: Duration = .seconds(60)

    /// A resolver on `loop`; `configuration` is read at every lookup (the system's files by default).
    public init(loop: EventLoop, clock: any TimeSource,
                configuration: @escaping () -> ResolverConfiguration = { ResolverConfiguration.system() }) {
        self.loop = loop
        self.clock = clock
        self.configuration = configuration
        loop.addTimers(self)
    }

    /// Looks `name` (a host name, see `ServerAddress.hostName`) up for addresses of `type`; `done`
    /// is called once, on the loop — before this returns when the hosts file has the name or no
    /// socket can be opened.
    public func resolve(_ name: String, type: DNSRecordType = .a, done: @escaping (Outcome) -> Void) {
        let configuration = configuration()
        let listed = configuration.hostsAddresses(for: name, type: type)
        if !listed.isEmpty { return done(.success((listed, Self.hostsTTL))) }
        // One socket, of the first server's family: the others of that family are asked in turn.
        let servers = configuration.servers.filter { $0.address.family == configuration.servers[0].address.family }
        guard lookups.count < Self.lookupLimit else {
            return done(.failure(.system(SystemError("resolve", name, errno: EAGAIN))))
        }
        let socket: UDPSocket
        do {
            let wildcard: IPAddress = servers[0].address.family == AF_INET6
                ? .v6(IPv6Address(bytes: [UInt8](repeating: 0, count: 16))!) : .v4(IPv4Address(0))
            socket = try UDPSocket(binding: Endpoint(wildcard, 0))
            try loop.register(socket.descriptor) { [unowned(unsafe) self, descriptor = socket.descriptor] in self.readable(descriptor) }
        } catch {
            return done(.failure(.system(error)))
        }
        var id: UInt16 = 0
        randombytes_buf(&id, 2)
        var lookup = Lookup(descriptor: socket.descriptor, query: DNSQuery(id: id, name: name, type: type), socket: socket, servers: servers,
                            timeout: configuration.timeout, tries: servers.count * configuration.attempts, done: done)
        send(&lookup)
        lookups.append(lookup)
    }

    /// Sends the question to the next server in turn.
    private func send(_ lookup: inout Lookup) {
        let server = lookup.servers[lookup.sent % lookup.servers.count]
        _ = try? lookup.socket.send(lookup.query.encoded(), to: server)
        lookup.sent += 1
        lookup.deadline = clock.now + lookup.timeout.nanoseconds
    }

    private func readable(_ descriptor: Int32) {
        guard let index = lookups.firstIndex(where: { $0.descriptor == descriptor }) else { return }
        let lookup = lookups[index]
        for _ in 0..<16 {
            guard let received = try? lookup.socket.receive(into: &buffer) else { return }
            // Only a server asked, echoing the question; anything else is ignored (a spoofer's guess).
            guard lookup.servers.contains(received.from) else { continue }
            do throws(DNSError) {
                let found = try lookup.query.addresses(in: Array(buffer[..<received.count]))
                return finish(descriptor, .success((found.addresses, .seconds(Int64(found.ttl)))))
            } catch {
                switch error {
                case .notOurs, .malformed: continue
                case .serverFailure where lookup.sent < lookup.tries:
                    send(&lookups[index])   // the next server may know better
                    return
                default:
                    return finish(descriptor, .failure(.answered(error, server: received.from)))
                }
            }
        }
    }

    private func finish(_ descriptor: Int32, _ outcome: Outcome) {
        guard let index = lookups.firstIndex(where: { $0.descriptor == descriptor }) else { return }
        let lookup = lookups.remove(at: index)
        loop.unregister(descriptor)
        lookup.done(outcome)
    }

    public var nextDeadline: Nanoseconds? { lookups.map { $0.deadline }.min() }

    @discardableResult
    public func fireDueTimers() -> Int {
        let now = clock.now
        let due = lookups.filter { $0.deadline <= now }.map { $0.descriptor }
        for descriptor in due {
            guard let index = lookups.firstIndex(where: { $0.descriptor == descriptor }) else { continue }
            if lookups[index].sent < lookups[index].tries {
                send(&lookups[index])
            } else {
                finish(descriptor, .failure(.unanswered(servers: lookups[index].servers)))
            }
        }
        return due.count
    }
}
