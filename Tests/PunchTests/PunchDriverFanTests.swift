import LabSupport
import Net
import Testing
@testable import Punch
import Time

/// A punch driver's fan of extra ports, over real UDP sockets on loopback: every burst leaves from
/// each fan port, and a guess that reaches one of them pins the peer through that port.
struct PunchDriverFanTests {
    static let loopback = Endpoint("127.0.0.1:0")!

    /// Reads what arrives on `socket` until `count` datagrams came or `wait` passed.
    static func drain(_ socket: UDPSocket, count: Int, within wait: Duration = .seconds(2)) throws -> [PortDatagram] {
        var received: [PortDatagram] = []
        let deadline = MonotonicTime.now() + wait
        while received.count < count, MonotonicTime.now() < deadline {
            _ = try Readiness.readable([socket.descriptor], timeout: .milliseconds(50))
            while let datagram = try socket.receive() { received.append(datagram) }
        }
        return received
    }

    @Test func everyBurstLeavesFromEachFanPort() throws {
        let alice = Member(), bob = Member()
        let target = try UDPSocket(binding: Self.loopback)
        let driver = PunchDriver<Int, UDPSocket>(socket: try UDPSocket(binding: Self.loopback))
        driver.start(1, PunchSession(key: alice.pairKey(with: bob), session: 7, candidates: []), observed: target.local.address)
        let fan = try (0..<8).map { _ in try UDPSocket(binding: Self.loopback) }
        driver.fan(1, fan, toward: target.local)

        driver.burst(1)
        let received = try Self.drain(target, count: fan.count)
        #expect(Set(received.map(\.source.port)) == Set(fan.map(\.port)))
        #expect(received.allSatisfy { PunchMessage.sender(of: $0.payload) == alice.pairKey(with: bob).local })

        #expect(driver.dropFan(1).count == fan.count)
        driver.burst(1)
        #expect(try Self.drain(target, count: 1, within: .milliseconds(300)).isEmpty, "a dropped fan sends nothing")
    }

    @Test func aGuessThatReachesAFanPortPinsThroughIt() throws {
        let alice = Member(), bob = Member()
        let aliceDriver = PunchDriver<Int, UDPSocket>(socket: try UDPSocket(binding: Self.loopback))
        let bobPort = try UDPSocket(binding: Self.loopback)
        let bobDriver = PunchDriver<Int, UDPSocket>(socket: bobPort)
        aliceDriver.start(1, PunchSession(key: alice.pairKey(with: bob), session: 9, candidates: [bobPort.local]), observed: bobPort.local.address)
        bobDriver.start(2, PunchSession(key: bob.pairKey(with: alice), session: 9, candidates: []), observed: Self.loopback.address)
        let fan = try (0..<8).map { _ in try UDPSocket(binding: Self.loopback) }
        aliceDriver.fan(1, fan, toward: bobPort.local)
        let hit = fan[5]

        // Bob guesses one port of Alice's fan; Alice's fan socket answers it, with an ACK and a PUNCH of
        // her own: Bob pins on the ACK, Alice on Bob's ACK of her PUNCH, both through that port.
        bobDriver.probe(2, [hit.local])
        var alicePinned: Endpoint?
        var bobPinned: [(Int, Endpoint)] = []
        let deadline = MonotonicTime.now() + .seconds(2)
        while alicePinned == nil || bobPinned.isEmpty, MonotonicTime.now() < deadline {
            _ = try Readiness.readable([hit.descriptor, bobPort.descriptor], timeout: .milliseconds(50))
            if let pinned = try aliceDriver.receive(1, on: hit) { alicePinned = pinned }
            bobPinned += try bobDriver.receive().pinned
        }
        #expect(alicePinned == bobPort.local)
        #expect(aliceDriver.pinnedFanSocket(1) === hit)
        #expect(aliceDriver.pinned(1) == bobPort.local)
        #expect(bobPinned.first?.1 == hit.local)

        // A new session forgets the fan port the old pin came through.
        aliceDriver.start(1, PunchSession(key: alice.pairKey(with: bob), session: 10, candidates: [bobPort.local]), observed: bobPort.local.address)
        #expect(aliceDriver.pinnedFanSocket(1) == nil)
    }
}
