import Net
import Testing
@testable import Punch

@Suite struct InternetChecksumTests {
    @Test func rfc1071Example() {
        // RFC 1071, section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        #expect(InternetChecksum.sum([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]) == 0xDDF2)
        #expect(InternetChecksum.checksum([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]) == 0x220D)
    }

    @Test func oddLengthIsPaddedWithZero() {
        #expect(InternetChecksum.sum([0x12, 0x34, 0x56]) == 0x1234 + 0x5600)
    }

    @Test func aDatagramWithItsChecksumSumsToAllOnes() {
        let source = IPv4Address(192, 0, 2, 1), destination = IPv4Address(203, 0, 113, 9)
        var datagram: [UInt8] = [0xCA, 0x6C, 0x0D, 0x96, 0x00, 0x0D, 0, 0, 0x68, 0x65, 0x6C, 0x6C, 0x6F]
        let checksum = InternetChecksum.udp(source: source, destination: destination, datagram: datagram)
        datagram[6] = UInt8(checksum >> 8)
        datagram[7] = UInt8(checksum & 0xFF)
        let pseudo = source.bytes + destination.bytes + [0, 17, 0, 13]
        #expect(InternetChecksum.sum(datagram, initial: InternetChecksum.sum(pseudo)) == 0xFFFF)
    }

    @Test func parseRejectsMalformedPackets() {
        let good: [UInt8] = [0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
                             0x30, 0x39, 0xCA, 0x6C, 0, 10, 0, 0, 0xAB, 0xCD]
        let parsed = RawPortSocket.parse(good[...])
        #expect(parsed == PortDatagram(payload: [0xAB, 0xCD], source: Endpoint("192.0.2.1:12345")!,
                                       destination: Endpoint("192.0.2.2:51820")!))
        for length in 0..<good.count { #expect(RawPortSocket.parse(good[..<length]) == nil, "truncated to \(length)") }
        var tcp = good; tcp[9] = 6
        #expect(RawPortSocket.parse(tcp[...]) == nil)
        var shortHeader = good; shortHeader[0] = 0x44
        #expect(RawPortSocket.parse(shortHeader[...]) == nil)
        var longUDP = good; longUDP[25] = 200
        #expect(RawPortSocket.parse(longUDP[...]) == nil)
    }
}
