import CLinux
import EventLoop
import Net
import Time

extension NATDetector {
    /// Runs NAT behaviour discovery to its end on an event loop of its own — `lanrage netcheck` and
    /// tests — on one port socket (a bound UDP socket, or the raw path next to WireGuard): probes
    /// `servers` from `socket`; returns the report or the reason there is none.
    public static func run(
        servers: [Endpoint], socket: any PortSocket, localAddresses: [IPAddress],
        policy: RetransmissionPolicy = RetransmissionPolicy(), clock: any TimeSource = SystemClock()
    ) throws(SystemError) -> Result<NATReport, DiscoveryFailure> {
        let loop = try EventLoop(clock: clock)
        var result: Result<NATReport, DiscoveryFailure>?
        let detector = NATDetector(socket: socket, clock: clock, policy: policy) { finished in
            result = finished
            loop.stop()
        }
        loop.addTimers(detector)
        try loop.register(socket.descriptor) {
            // A bounded batch, so that a flood of strays cannot hold back the retransmission timers.
            for _ in 0..<ReadBatch.datagrams where result == nil {
                guard let datagram = (try? socket.receive()) ?? nil else { break }
                detector.received(datagram)
            }
        }
        defer { loop.unregister(socket.descriptor) }
        detector.start(servers: servers, localAddresses: localAddresses)
        // The run always finishes (every transaction times out); none starts without servers.
        if detector.isRunning { try loop.run() }
        return result ?? .failure(DiscoveryFailure(servers: []))
    }
}

