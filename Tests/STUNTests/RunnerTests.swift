import EventLoop
import Foundation
import Net
import Testing
@testable import STUN
import Time

/// `NATDetector.run` and `STUNServer` on real loopback sockets (no root needed; the NAT lab tests
/// in STUNLabTests cover the real NATs).
@Suite struct RunnerTests {
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }

    @Test(arguments: ["127.0.0.1", "[::1]"])
    func discoversNoNATOnLoopbackAgainstTheRealServer(_ host: String) throws {
        nonisolated(unsafe) let server = try STUNServer(listen: Endpoint("\(host):0")!, alternate: nil)
        let stop = Flag(), stopped = Flag()
        Thread.detachNewThread {
            try? server.serve(tick: .milliseconds(20)) { stop.isSet }
            stopped.set()
        }
        defer {
            stop.set()
            let deadline = Date().addingTimeInterval(2)
            while !stopped.isSet && Date() < deadline { usleep(5_000) }
        }
        let client = try UDPSocket(binding: Endpoint("\(host):0")!)
        let result = try NATDetector.run(servers: [server.sockets[0].local], socket: client,
                                             localAddresses: [client.local.address])
        let report = try result.get()
        #expect(report.natType == .open)
        #expect(report.publicEndpoint == client.local)
        #expect(report.portPreserved)
        #expect(!report.complete)
        let rtt = try #require(report.servers.first?.roundTrip)
        #expect(rtt > .zero && rtt < .seconds(1))
    }

    /// The agent detects again on its port now and then. A run no server answers (the server
    /// down a moment, or a lossy link) leaves the last answer standing: withdrawn, the public
    /// endpoint and the type would send every peer punching again, and tell new ones nothing.
    @Test func aFailedRerunLeavesTheLastAnswerStanding() throws {
        let server = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let responder = BindingResponder(primary: server.local, alternate: nil)
        let silent = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let client = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let loop = try EventLoop()
        var result: Result<NATReport, DiscoveryFailure>?
        let policy = RetransmissionPolicy(initialRTO: .milliseconds(10), maxRTO: .milliseconds(40), attempts: 4, finalWait: .milliseconds(40))
        let detector = NATDetector(socket: client, clock: SystemClock(), policy: policy) { finished in
            result = finished
            loop.stop()
        }
        loop.addTimers(detector)
        try loop.register(client.descriptor) {
            while let datagram = (try? client.receive()) ?? nil { detector.received(datagram) }
        }
        var buffer = [UInt8](repeating: 0, count: 2048)
        try loop.register(server.descriptor) {
            while let (count, from) = (try? server.receive(into: &buffer)) ?? nil {
                if let reply = responder.respond(to: Array(buffer[..<count]), from: from, on: server.local) { _ = try? server.send(reply.bytes, to: reply.to) }
            }
        }
        func detect(against server: Endpoint) throws -> Result<NATReport, DiscoveryFailure>? {
            result = nil
            detector.start(servers: [server], localAddresses: [client.local.address])
            try loop.run()
            return result
        }
        let first = try #require(try detect(against: server.local)?.get())
        #expect(detector.report == first && first.natType == .open)
        guard case .failure = try detect(against: silent.local) else { Issue.record("the silent server answered"); return }
        #expect(detector.report == first, "the last answer stands")
    }

    @Test func silentLoopbackPortFailsWithinThePolicyTime() throws {
        let client = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        // A bound socket that never answers.
        let silent = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let policy = RetransmissionPolicy(initialRTO: .milliseconds(10), maxRTO: .milliseconds(40), attempts: 4,
                                          finalWait: .milliseconds(40))
        let start = MonotonicTime.now()
        let result = try NATDetector.run(servers: [silent.local], socket: client, localAddresses: [], policy: policy)
        let elapsed = MonotonicTime.now() - start
        guard case .failure(let failure) = result else { Issue.record("expected a failure"); return }
        #expect(failure.description.contains("no response from \(silent.local) after 4 tries"))
        #expect(elapsed >= .milliseconds(110) && elapsed < .seconds(2))
        var buffer = [UInt8](repeating: 0, count: 64)
        var requests = 0
        while let _ = try silent.receive(into: &buffer) { requests += 1 }
        #expect(requests == 4)
    }
}
