import CLinux
import Net

/// Opens the right socket for LANrage's datagrams on `port`: a plain UDP socket bound to it when
/// the port is free (0: the kernel chooses), the raw path (IPv4) when something — WireGuard —
/// already listens on it.
public func openPortSocket(port: UInt16, family: Int32 = AF_INET) throws(SystemError) -> any PortSocket {
    do {
        return try UDPSocket(binding: Endpoint(.unspecified(family), port))
    } catch where error.errno == EADDRINUSE && family == AF_INET {
        return try RawPortSocket(port: port)
    }
}
