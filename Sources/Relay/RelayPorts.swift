import CLinux
import Net

/// The allocation ports of a relay, as its core (``RelayCore``) uses them: the relay server binds
/// them as UDP sockets on its event loop; the simulation, on a host of its network.
public protocol RelayPorts: AnyObject {
    /// Opens `port` on `address` for side `side` of `allocation` (what arrives on it goes to
    /// ``RelayCore/received(_:from:on:side:)``), replacing the port's socket when it is open on
    /// another address. Returns the port's handle for ``send(_:through:to:length:)`` (the relay
    /// server's socket descriptor: no lookup per datagram), or `nil` when the port cannot be bound.
    func open(_ port: UInt16, on address: IPAddress, for allocation: Allocation, side: Int) -> Int32?
    /// Closes an allocation's port: nothing arrives on it any more.
    func close(_ port: UInt16)
    /// Sends `datagram` from the allocation port whose handle is `handle` to the socket address
    /// `destination` (`length` bytes of it). Returns whether it went whole.
    func send(_ datagram: UnsafeRawBufferPointer, through handle: Int32, to destination: UnsafePointer<sockaddr>, length: socklen_t) -> Bool
}
