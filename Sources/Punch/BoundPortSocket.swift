import Net

/// LANrage's datagrams on a port nothing else listens on: a plain UDP socket bound to it.
/// Used before WireGuard listens (and where raw sockets are not allowed).
public final class BoundPortSocket: PortSocket {
    public let port: UInt16
    private let socket: UDPSocket
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    public init(port: UInt16) throws(SystemError) {
        socket = try UDPSocket(binding: Endpoint(.v4(IPv4Address(0)), port))
        self.port = socket.local.port
    }

    public var descriptor: Int32 { socket.descriptor }

    public func send(_ payload: [UInt8], to destination: Endpoint) throws(SystemError) {
        try socket.send(payload, to: destination)
    }

    public func receive() throws(SystemError) -> PortDatagram? {
        guard let (count, source) = try socket.receive(into: &buffer) else { return nil }
        return PortDatagram(payload: Array(buffer[..<count]), source: source, destination: socket.local)
    }
}

/// Opens the right socket for the port: a plain bound one when the port is free, the raw path
/// when something (WireGuard) already listens on it.
public func openPortSocket(port: UInt16) throws(SystemError) -> any PortSocket {
    do {
        return try BoundPortSocket(port: port)
    } catch where error.errno == EADDRINUSE {
        return try RawPortSocket(port: port)
    }
}

#if canImport(Glibc)
import Glibc
#endif
