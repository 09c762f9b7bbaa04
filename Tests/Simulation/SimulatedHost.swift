import Net

/// A machine on the simulated network, with UDP sockets bound to its ports.
public final class SimulatedHost {
    public let name: String
    public let address: IPv4Address
    let segment: Int
    unowned let network: SimulatedNetwork
    private var sockets: [UInt16: SimulatedSocket] = [:]
    private var nextEphemeral: UInt16 = 40000

    init(name: String, address: IPv4Address, segment: Int, network: SimulatedNetwork) {
        self.name = name
        self.address = address
        self.segment = segment
        self.network = network
    }

    /// A socket bound to `port`, or to a free ephemeral port when `nil`.
    public func socket(port: UInt16? = nil) -> SimulatedSocket {
        var chosen = port ?? nextEphemeral
        if port == nil {
            while sockets[chosen] != nil { chosen &+= 1 }
            nextEphemeral = chosen &+ 1
        }
        precondition(sockets[chosen] == nil, "\(name): port \(chosen) is taken")
        let socket = SimulatedSocket(host: self, port: chosen)
        sockets[chosen] = socket
        return socket
    }

    /// Closes the socket on `port`: datagrams to it are dropped from now on.
    public func close(port: UInt16) {
        sockets[port] = nil
    }

    func receive(_ datagram: PortDatagram) {
        guard let socket = sockets[datagram.destination.port] else {
            return network.note("\(name): nothing listens on \(datagram.destination.port)")
        }
        socket.enqueue(datagram)
    }
}

/// A UDP socket of a simulated host: the `PortSocket` the real components send and receive with.
/// Arriving datagrams queue (up to `queueLimit`, as a socket's receive buffer) and `onReadable`
/// runs, as the event loop runs a handler when epoll says readable.
public final class SimulatedSocket: PortSocket {
    public let port: UInt16
    public var descriptor: Int32 { -1 }
    unowned let host: SimulatedHost
    /// Runs when a datagram arrives.
    public var onReadable: (() -> Void)?
    private var queue: [PortDatagram] = []
    private var head = 0
    static let queueLimit = 1024

    init(host: SimulatedHost, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// This socket's address.
    public var local: Endpoint { Endpoint(.v4(host.address), port) }

    @discardableResult
    public func send(_ payload: [UInt8], to destination: Endpoint) throws(SystemError) -> Bool {
        host.network.send(payload, from: local, to: destination, segment: host.segment)
        return true
    }

    public func receive() throws(SystemError) -> PortDatagram? {
        guard head < queue.count else { return nil }
        let datagram = queue[head]
        head += 1
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        }
        return datagram
    }

    func enqueue(_ datagram: PortDatagram) {
        guard queue.count - head < Self.queueLimit else { return host.network.note("\(host.name):\(port) receive queue full") }
        queue.append(datagram)
        onReadable?()
    }
}
