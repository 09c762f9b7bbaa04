import Net
import Time
import Testing
@testable import Punch

/// The port-mapping machine in virtual time, against gateway answers written byte by byte from
/// RFC 6887 (PCP) and RFC 6886 (NAT-PMP).
@Suite struct PortMappingTests {
    static let client = IPAddress.v4(IPv4Address(203, 0, 113, 6))
    static let nonce = [UInt8](1...12)
    static let external = IPv4Address(198, 51, 100, 6)

    static let gateway = IPAddress.v4(IPv4Address(203, 0, 113, 5))

    static func machine(_ protocols: [PortMappingProtocol] = [.pcp, .natPMP]) -> PortMapping {
        PortMapping(client: client, gateway: gateway, internalPort: 51820, protocols: protocols, nonce: nonce)
    }

    /// A PCP MAP answer: result, lifetime, the nonce, UDP, internal port 51820, the external endpoint.
    static func pcpAnswer(result: UInt8 = 0, lifetime: UInt32 = 7200, nonce: [UInt8] = nonce, port: UInt16 = 40000) -> [UInt8] {
        [2, 0x81, 0, result] + PortMappingRequest.u32(lifetime) + PortMappingRequest.u32(1) + [UInt8](repeating: 0, count: 12)
            + nonce + [17, 0, 0, 0] + PortMappingRequest.u16(51820) + PortMappingRequest.u16(port) + PortMappingRequest.mapped(.v4(external))
    }

    @Test func aPCPGatewayMapsThePortAndItIsRenewedAtHalfItsLifetime() throws {
        var mapping = Self.machine()
        let requestSent = mapping.start(now: 0).send?.encoded
        let request = try #require(requestSent)
        #expect(request.count == 60 && request[0] == 2 && request[1] == 1, "PCP version 2, MAP")
        #expect(Array(request[8..<24]) == PortMappingRequest.mapped(Self.client) && Array(request[24..<36]) == Self.nonce)
        #expect(request[36] == 17 && Array(request[40..<42]) == [0xCA, 0x6C], "UDP, internal port 51820")
        let result1 = mapping.received(Self.pcpAnswer(nonce: [UInt8](repeating: 9, count: 12)), now: 1)
        #expect(result1 == PortMapping.Output(), "another nonce: ignored")
        let result2 = mapping.received(Self.pcpAnswer(), now: 1_000)
        #expect(result2 == PortMapping.Output(changed: true))
        #expect(mapping.mapped == PortMapping.Mapped(protocolUsed: .pcp, external: Endpoint(.v4(Self.external), 40000), lifetime: 7200,
                                                        expires: 1_000 + 7200 * 1_000_000_000))
        let renewAt = mapping.deadline
        #expect(renewAt == Nanoseconds(1_000 + 3600 * 1_000_000_000))
        let renewalSent = mapping.timer(now: mapping.deadline!).send?.encoded
        let renewal = try #require(renewalSent)
        #expect(renewal == request, "the same MAP, the same nonce")
        let result3 = mapping.received(Self.pcpAnswer(), now: 2)
        #expect(result3 == PortMapping.Output(), "renewed, unchanged")
        let deleteSent = mapping.stop().first?.encoded
        let delete = try #require(deleteSent)
        #expect(Array(delete[4..<8]) == [0, 0, 0, 0] && Array(delete[24..<36]) == Self.nonce, "lifetime 0 deletes the mapping")
        #expect(mapping.mapped == nil && mapping.deadline == nil)
    }

    @Test func aNATPMPOnlyGatewayIsAskedInNATPMP() throws {
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        // NAT-PMP's answer to a version it does not speak: version 0, opcode 128 + 1, result 1.
        let address = mapping.received([0, 0x81, 0, 1, 0, 0, 0, 5], now: 1)
        #expect(address.send?.encoded == [0, 0])
        let mapSent = mapping.received([0, 128, 0, 0, 0, 0, 0, 5] + Self.external.bytes, now: 2).send?.encoded
        let map = try #require(mapSent)
        #expect(map == [0, 1, 0, 0, 0xCA, 0x6C, 0xCA, 0x6C, 0, 0, 0x1C, 0x20], "UDP, 51820 → 51820, 7200 s")
        let granted = mapping.received([0, 129, 0, 0, 0, 0, 0, 5, 0xCA, 0x6C, 0xCA, 0x6D, 0, 0, 0x0E, 0x10], now: 3)
        #expect(granted.changed)
        #expect(mapping.mapped == PortMapping.Mapped(protocolUsed: .natPMP, external: Endpoint(.v4(Self.external), 51821), lifetime: 3600,
                                                        expires: 3 + 3600 * 1_000_000_000))
        let result4 = mapping.stop().first?.encoded
        #expect(result4 == [0, 1, 0, 0, 0xCA, 0x6C, 0, 0, 0, 0, 0, 0])
    }

    @Test func anUnansweredProtocolIsTriedFourTimesThenTheNext() throws {
        var mapping = Self.machine()
        let first = mapping.start(now: 0).send?.encoded
        var sent = [try #require(first)]
        var now: Int64 = 0
        while let deadline = mapping.deadline, sent.count < 10 {
            now = deadline
            if let bytes = mapping.timer(now: now).send?.encoded { sent.append(bytes) }
        }
        #expect(sent.prefix(4).allSatisfy { $0.count == 60 }, "PCP four times")
        #expect(sent.dropFirst(4).prefix(4).allSatisfy { $0 == [0, 0] }, "then NAT-PMP's address request four times")
        #expect(now >= 2 * 3_750_000_000, "250, 500, 1,000, 2,000 ms apart")
        #expect(mapping.mapped == nil && sent.count == 10, "after both, a new round five minutes later")
    }

    @Test func aRefusalIsKeptAndTheNextProtocolAsked() throws {
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        let result5 = mapping.received(Self.pcpAnswer(result: 2), now: 1).send?.encoded
        #expect(result5 == [0, 0], "NOT_AUTHORIZED: NAT-PMP next")
        #expect(mapping.lastRefusal?.0 == .pcp && mapping.lastRefusal?.1 == 2)
        let result6 = mapping.received([0, 128, 0, 3], now: 2)
        #expect(result6 == PortMapping.Output(), "refused again: no protocol left")
        #expect(mapping.mapped == nil && mapping.deadline == 2 + PortMapping.retry)
    }

    /// A renewal nobody answers keeps the mapping until its lifetime runs out (retried every 30 s);
    /// a NAT-PMP renewal asks the external address again, which may have moved.
    @Test func aFailedRenewalKeepsTheMappingUntilItExpires() throws {
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        _ = mapping.received([0, 0x81, 0, 1, 0, 0, 0, 5], now: 0)
        _ = mapping.received([0, 128, 0, 0, 0, 0, 0, 5] + Self.external.bytes, now: 0)
        _ = mapping.received([0, 129, 0, 0, 0, 0, 0, 5, 0xCA, 0x6C, 0xCA, 0x6C, 0, 0, 0, 100], now: 0)
        let expires = try #require(mapping.mapped?.expires)
        #expect(expires == 100 * 1_000_000_000)
        var now: Nanoseconds = 0, renewals: [[UInt8]] = [], went: Nanoseconds?
        while let deadline = mapping.deadline, deadline < 200 * 1_000_000_000, went == nil {
            now = deadline
            let output = mapping.timer(now: now)
            if let bytes = output.send?.encoded { renewals.append(bytes) }
            if output.changed { went = now }
        }
        #expect(renewals.first == [0, 0], "a NAT-PMP renewal asks the external address again")
        let gone = try #require(went)
        #expect(gone >= expires, "kept until it expired, not dropped at the first failed round")
        #expect(mapping.mapped == nil)
    }

    @Test func aPCPGrantOfPortZeroOrNoAddressIsNotAMapping() {
        var mapping = Self.machine([.pcp])
        _ = mapping.start(now: 0)
        let portZero = mapping.received(Self.pcpAnswer(port: 0), now: 1)
        #expect(portZero == PortMapping.Output() && mapping.mapped == nil)
    }
}
