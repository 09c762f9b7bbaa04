#if canImport(Glibc)
import Glibc
#endif
import Net
import Testing
@testable import Punch

/// The raw path on loopback, next to a socket that owns the port the way WireGuard does.
@Suite(.enabled(if: geteuid() == 0, "raw sockets need CAP_NET_RAW: run as root"))
struct RawPortSocketTests {
    static let stunLike: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + Array(repeating: 7, count: 12)
    static let punchLike: [UInt8] = Array("LANRAGE_PUNCH v1 test".utf8)
    static let other: [UInt8] = Array("hello, WireGuard".utf8)

    /// Polls `body` until it returns a value, for at most two seconds.
    func eventually<T>(_ body: () throws -> T?) rethrows -> T? {
        for _ in 0..<2000 {
            if let value = try body() { return value }
            usleep(1000)
        }
        return nil
    }

    @Test func sendsFromAPortAnotherSocketOwns() throws {
        let owner = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)   // stands in for WireGuard
        let peer = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        #expect(throws: SystemError.self) { try UDPSocket(binding: Endpoint(.v4(IPv4Address(0)), owner.local.port)) }
        let raw = try RawPortSocket(port: owner.local.port)
        try raw.send(Self.punchLike, to: peer.local)
        var buffer = [UInt8](repeating: 0, count: 1500)
        let got = try eventually { try peer.receive(into: &buffer) }
        let received = try #require(got)
        #expect(Array(buffer[..<received.count]) == Self.punchLike)
        #expect(received.from == owner.local, "the datagram left from the owned port")
    }

    @Test func receivesOnlyStunAndPunchDatagramsWhileTheOwnerGetsEverything() throws {
        let owner = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let peer = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let raw = try RawPortSocket(port: owner.local.port)
        for payload in [Self.other, Self.stunLike, Array("LANRAGE".utf8), Self.punchLike] {
            try peer.send(payload, to: owner.local)
        }
        var seen: [PortDatagram] = []
        _ = try eventually { () throws(SystemError) -> Bool? in
            while let datagram = try raw.receive() { seen.append(datagram) }
            return seen.count >= 2 ? true : nil
        }
        #expect(seen.map(\.payload) == [Self.stunLike, Self.punchLike])
        #expect(seen.allSatisfy { $0.source == peer.local && $0.destination == owner.local })
        var buffer = [UInt8](repeating: 0, count: 1500)
        var ownerGot: [[UInt8]] = []
        _ = try eventually { () throws(SystemError) -> Bool? in
            while let (count, _) = try owner.receive(into: &buffer) { ownerGot.append(Array(buffer[..<count])) }
            return ownerGot.count >= 4 ? true : nil
        }
        #expect(ownerGot.count == 4, "the owner (WireGuard) still receives every datagram")
    }

    @Test func datagramsToOtherPortsAreFilteredOut() throws {
        let owner = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let elsewhere = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let peer = try UDPSocket(binding: Endpoint("127.0.0.1:0")!)
        let raw = try RawPortSocket(port: owner.local.port)
        try peer.send(Self.punchLike, to: elsewhere.local)
        try peer.send(Self.stunLike, to: owner.local)
        let first = try eventually { try raw.receive() }
        #expect(first?.payload == Self.stunLike)
        #expect(try raw.receive() == nil)
    }

    @Test func theRawPathCarriesIPv6Too() throws {
        let owner = try UDPSocket(binding: Endpoint("[::1]:0")!)
        let peer = try UDPSocket(binding: Endpoint("[::1]:0")!)
        let raw = try RawPortSocket(port: owner.local.port)
        try raw.send(Self.punchLike, to: peer.local)
        var buffer = [UInt8](repeating: 0, count: 1500)
        let got = try eventually { try peer.receive(into: &buffer) }
        let received = try #require(got, "the kernel checksummed the datagram (a wrong checksum is dropped)")
        #expect(Array(buffer[..<received.count]) == Self.punchLike)
        #expect(received.from == owner.local, "the datagram left from the owned port")

        for payload in [Self.other, Self.stunLike, Self.punchLike] { try peer.send(payload, to: owner.local) }
        var seen: [PortDatagram] = []
        _ = try eventually { () throws(SystemError) -> Bool? in
            while let datagram = try raw.receive() { seen.append(datagram) }
            return seen.count >= 2 ? true : nil
        }
        #expect(seen.map(\.payload) == [Self.stunLike, Self.punchLike])
        #expect(seen.allSatisfy { $0.source == peer.local && $0.destination == owner.local }, "\(seen)")
    }

    @Test func openPortSocketFallsBackToTheRawPathOnlyWhenThePortIsTaken() throws {
        let free = try openPortSocket(port: 0)
        #expect(free is UDPSocket)
        let owner = try UDPSocket(binding: Endpoint("0.0.0.0:0")!)
        let taken = try openPortSocket(port: owner.local.port)
        #expect(taken is RawPortSocket)
    }
}
