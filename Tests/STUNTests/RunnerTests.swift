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
