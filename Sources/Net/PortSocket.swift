/// A UDP datagram exchanged on the WireGuard port: STUN or a punch message.
public struct PortDatagram: Equatable, Sendable {
    public var payload: [UInt8]
    public var source: Endpoint
    public var destination: Endpoint

    public init(payload: [UInt8], source: Endpoint, destination: Endpoint) {
        self.payload = payload
        self.source = source
        self.destination = destination
    }
}

/// Sends and receives LANrage's own datagrams (STUN, punches) on one UDP port — the WireGuard
/// port, which WireGuard may already own (see `Punch.RawPortSocket`).
public protocol PortSocket: AnyObject {
    /// The local UDP port (the WireGuard listen port).
    var port: UInt16 { get }
    /// The descriptor to watch for readability in the event loop.
    var descriptor: Int32 { get }
    /// Sends `payload` from the port to `destination`; `false` when the send would block (the
    /// datagram is dropped, as UDP allows).
    @discardableResult
    func send(_ payload: [UInt8], to destination: Endpoint) throws(SystemError) -> Bool
    /// The next queued datagram for the port, or `nil` when none is queued.
    func receive() throws(SystemError) -> PortDatagram?
}
