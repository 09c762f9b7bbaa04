import CLinux
import EventLoop
import Output
import Net
import Rendezvous
import Time

/// `lanrage relay`: allocates per pair of members one UDP port for each side, granted only with a
/// token from the control server (each token once), and forwards datagrams between the two sides
/// with no framing, from and to the source each side latched with an authenticated latch datagram.
/// It listens on one IPv4 address, one IPv6 address, or both: each side's port is bound on the
/// address of the family its token names, so a member on an IPv6-only line and one on IPv4 meet.
/// What it decides is its ``RelayCore``'s; this is its sockets on the event loop.
public final class RelayServer: RelayPorts {
    public typealias Configuration = RelayCore.Configuration

    /// What the relay decides; this is its sockets.
    public private(set) var core: RelayCore!
    /// The service port on each listen address.
    public let services: [UDPSocket]
    /// The allocations' sockets, by port.
    public private(set) var sockets: [UInt16: UDPSocket] = [:]
    private let loop: EventLoop
    private let clock: any TimeSource
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    public init(_ configuration: Configuration, loop: EventLoop, clock: any TimeSource = SystemClock()) throws(SystemError) {
        precondition(configuration.ports.count >= 3, "a relay needs its service port and at least one pair of ports")
        self.loop = loop
        self.clock = clock
        var services: [UDPSocket] = []
        for address in configuration.listen {
            let service = try UDPSocket(binding: Endpoint(address, configuration.ports.lowerBound))
            // A party starting at once asks for its allocations in one burst: let it wait in the kernel.
            service.enlargeBuffers(to: 1 << 20)
            services.append(service)
        }
        self.services = services
        core = RelayCore(configuration, ports: self, clock: clock)
        for service in services {
            try loop.register(service.descriptor) { [unowned(unsafe) self, unowned(unsafe) service] in self.serviceReadable(service) }
        }
        let sweep = min(Duration.seconds(1), configuration.idleTimeout / 4)
        loop.addTimers(Ticker(every: sweep, clock: clock) { [unowned(unsafe) self] in self.core.expireIdle() })
    }

    public var counters: RelayCore.Counters { core.counters }
    public var allocations: [[UInt8]: Allocation] { core.allocations }
    public var allocationCount: Int { core.allocationCount }

    // MARK: Service port

    private func serviceReadable(_ service: UDPSocket) {
        for _ in 0..<ReadBatch.datagrams {
            let received: (count: Int, from: Endpoint)?
            do { received = try service.receive(into: &buffer) } catch { continue }
            guard let (count, from) = received else { return }
            let answer = buffer.withUnsafeBytes { core.service(UnsafeRawBufferPointer(rebasing: $0[..<count]), from: from) }
            if let answer { _ = try? service.send(answer, to: from) }
        }
    }

    // MARK: Allocation ports

    public func open(_ port: UInt16, on address: IPAddress, for allocation: Allocation, side: Int) -> Int32? {
        guard let socket = try? UDPSocket(binding: Endpoint(address, port)) else { return nil }
        do {
            try loop.register(socket.descriptor) { [unowned(unsafe) self, unowned(unsafe) allocation] in
                self.forward(socket.descriptor, allocation, from: side)
            }
        } catch {
            return nil
        }
        if let replaced = sockets[port] { loop.unregister(replaced.descriptor) }
        sockets[port] = socket
        return socket.descriptor
    }

    public func close(_ port: UInt16) {
        guard let socket = sockets.removeValue(forKey: port) else { return }
        loop.unregister(socket.descriptor)
    }

    public func send(_ datagram: UnsafeRawBufferPointer, through handle: Int32, to destination: UnsafePointer<sockaddr>, length: socklen_t) -> Bool {
        sendto(handle, datagram.baseAddress, datagram.count, 0, destination, length) == datagram.count
    }

    /// Reads side `index`'s socket (at most ``ReadBatch/datagrams`` a round) into the core.
    private func forward(_ descriptor: Int32, _ allocation: Allocation, from index: Int) {
        var storage = sockaddr_storage()
        var activity = false
        for _ in 0..<ReadBatch.datagrams {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(descriptor, raw.baseAddress, raw.count, 0, $0, &length) }
                }
            }
            if count < 0 {
                if lanrage_errno() == EINTR || lanrage_errno() == ECONNREFUSED { continue }
                break
            }
            if buffer.withUnsafeBytes({ core.received(UnsafeRawBufferPointer(rebasing: $0[..<count]), from: storage, on: allocation, side: index) }) {
                activity = true
            }
        }
        if activity { core.touch(allocation) }
    }

    /// One line of counters, for logs (SIGHUP and exit).
    public var summary: Logger.Metadata { core.summary }
}
