import CLinux
import EventLoop
import Net

/// A STUN server on real sockets: the `BindingResponder` behind one socket per listen endpoint.
public final class STUNServer {
    public let responder: BindingResponder
    public let sockets: [UDPSocket]
    /// Requests answered so far.
    public private(set) var answered = 0

    public init(listen: Endpoint, alternate: Endpoint?, software: String = "lanrage") throws(SystemError) {
        var responder = BindingResponder(primary: listen, alternate: alternate, software: software)
        var sockets: [UDPSocket] = []
        for endpoint in responder.listenEndpoints { sockets.append(try UDPSocket(binding: endpoint, reuseAddress: true)) }
        if listen.port == 0 || alternate?.port == 0 {
            // Ports chosen by the kernel: rebuild the responder around what was bound (only without alternate).
            responder = BindingResponder(primary: sockets[0].local, alternate: alternate, software: software)
        }
        self.responder = responder
        self.sockets = sockets
    }

    /// Serves until `shouldStop` returns true (checked at least every `tick`).
    public func serve(tick: Duration = .milliseconds(200), shouldStop: () -> Bool = { false }) throws(SystemError) {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !shouldStop() {
            let ready = try Readiness.readable(sockets.map { $0.descriptor }, timeout: tick)
            for socket in sockets where ready.contains(socket.descriptor) {
                // A bounded batch: a flood on one socket cannot starve the other or `shouldStop`.
                for _ in 0..<ReadBatch.datagrams {
                    guard let (count, from) = (try? socket.receive(into: &buffer)) ?? nil else { break }
                    guard let reply = responder.respond(to: Array(buffer[..<count]), from: from, on: socket.local),
                          let out = sockets.first(where: { $0.local == reply.from }) else { continue }
                    _ = try? out.send(reply.bytes, to: reply.to)
                    answered += 1
                }
            }
        }
    }
}
