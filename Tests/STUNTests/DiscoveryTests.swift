import CMalloc
import Net
import Testing
@testable import STUN

@Suite struct DiscoveryTests {
    static let natCases: [(MappingBehavior, FilteringBehavior, NATType)] = [
        (.endpointIndependent, .endpointIndependent, .fullCone),
        (.endpointIndependent, .addressDependent, .restrictedCone),
        (.endpointIndependent, .addressAndPortDependent, .portRestrictedCone),
        (.addressDependent, .addressAndPortDependent, .symmetric),
        (.addressAndPortDependent, .addressAndPortDependent, .symmetric),
        (.addressAndPortDependent, .endpointIndependent, .symmetric),
    ]

    @Test(arguments: natCases)
    func classifiesEachNATInVirtualTime(_ mapping: MappingBehavior, _ filtering: FilteringBehavior, _ type: NATType) throws {
        var network = VirtualNetwork()
        network.nat = SimulatedNAT(mapping: mapping, filtering: filtering, publicAddress: .v4(IPv4Address(198, 51, 100, 1)))
        let (result, elapsed) = network.run()
        let report = try result.get()
        #expect(report.mapping == mapping)
        #expect(report.filtering == filtering)
        #expect(report.natType == type)
        #expect(report.complete)
        #expect(report.publicEndpoint == Endpoint("198.51.100.1:51820"))
        #expect(report.portPreserved)
        #expect(report.servers.first?.roundTrip == .milliseconds(20))
        // Endpoint-independent filtering answers at once; any other waits out one transaction (2.3 s).
        let expected: Duration = filtering == .endpointIndependent ? .milliseconds(60) : .milliseconds(2340)
        #expect(elapsed == expected)
    }

    /// The agent detects again on its WireGuard port. The first run's mapping tests sent to the
    /// server's other address, and the NAT lets that address in from then on: a second run on the
    /// port sees any filter as endpoint-independent. Behind the same public address the first
    /// run's filtering stands (``NATReport/keepingEarlier(_:)``); at a new address the new run counts.
    @Test(arguments: [FilteringBehavior.addressDependent, .addressAndPortDependent])
    func aRerunOnTheSamePortKeepsTheFilteringItCannotMeasure(_ filtering: FilteringBehavior) throws {
        var network = VirtualNetwork()
        network.nat = SimulatedNAT(mapping: .endpointIndependent, filtering: filtering, publicAddress: .v4(IPv4Address(198, 51, 100, 1)))
        let first = try network.run().result.get()
        let rerun = try network.run().result.get()
        #expect(first.filtering == filtering)
        #expect(rerun.filtering == .endpointIndependent && rerun.natType == .fullCone, "the filter the first run opened")
        let kept = rerun.keepingEarlier(first)
        #expect(kept.filtering == filtering && kept.natType == first.natType)
        #expect(kept.notes.last?.contains("filtering kept from the run before") == true)
        #expect(first.keepingEarlier(nil) == first && first.keepingEarlier(first) == first)
        var lossy = first
        lossy.mapping = .unknown
        lossy.natType = .unknown
        let completed = lossy.keepingEarlier(first)
        #expect(completed.mapping == .endpointIndependent && completed.natType == first.natType,
                "a mapping test lost under loss says nothing new")
        var moved = rerun
        moved.publicEndpoint = Endpoint("203.0.113.77:51820")!
        #expect(moved.keepingEarlier(first) == moved, "another public address: another NAT, tested afresh")
    }

    @Test func noNATIsOpen() throws {
        var network = VirtualNetwork()
        let report = try network.run().result.get()
        #expect(report.natType == .open)
        #expect(report.mapping == .endpointIndependent)
        #expect(report.filtering == .endpointIndependent)
        #expect(report.publicEndpoint == network.local)
    }

    @Test func reportsAPortThatWasNotPreserved() throws {
        var network = VirtualNetwork()
        network.nat = SimulatedNAT(mapping: .endpointIndependent, filtering: .endpointIndependent,
                                   publicAddress: .v4(IPv4Address(198, 51, 100, 1)), preservePort: false)
        let report = try network.run().result.get()
        #expect(!report.portPreserved)
        #expect(report.publicEndpoint == Endpoint("198.51.100.1:40000"))
    }

    @Test func silentServerFailsAfterSevenTriesIn2300Milliseconds() throws {
        var network = VirtualNetwork()
        network.server = .silent
        let (result, elapsed) = network.run()
        #expect(elapsed == .milliseconds(2300))
        guard case .failure(let failure) = result else { Issue.record("expected failure"); return }
        #expect(failure.description == "192.0.2.1:3478: no response from 192.0.2.1:3478 after 7 tries")
        #expect(network.sent.map(\.at) == [0, 100, 300, 700, 1100, 1500, 1900].map { Duration.milliseconds($0) })
    }

    @Test func retransmissionScheduleFollowsThePolicy() {
        let rfc = RetransmissionPolicy.rfc8489
        #expect((1...7).map(rfc.wait(afterAttempt:)) == [500, 1000, 2000, 4000, 8000, 16000, 8000].map { Duration.milliseconds($0) })
        #expect(rfc.totalTime == .milliseconds(39500))
        let fast = RetransmissionPolicy(initialRTO: .milliseconds(50), maxRTO: .seconds(1), attempts: 3, finalWait: .milliseconds(200))
        #expect(fast.totalTime == .milliseconds(350))
    }

    @Test func garbageAnswersAreNamedInTheFailure() throws {
        var network = VirtualNetwork()
        network.server = .garbage
        guard case .failure(let failure) = network.run().result else { Issue.record("expected failure"); return }
        #expect(failure.description.contains("no response from 192.0.2.1:3478 after 7 tries (it sent 7 malformed datagrams"))
    }

    @Test func oneAddressServerGivesThePartialAnswerAndSaysSo() throws {
        var network = VirtualNetwork()
        network.server = .oneAddress
        network.nat = SimulatedNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent,
                                   publicAddress: .v4(IPv4Address(198, 51, 100, 1)))
        let report = try network.run().result.get()
        #expect(!report.complete)
        #expect(report.filtering == .unknown)
        #expect(report.mapping == .unknown)
        #expect(report.natType == .unknown)
        #expect(report.notes.contains { $0.contains("filtering not tested") })
        #expect(report.publicEndpoint == Endpoint("198.51.100.1:51820"))
    }

    @Test(arguments: [(MappingBehavior.addressAndPortDependent, MappingBehavior.dependent, NATType.symmetric),
                      (.endpointIndependent, .endpointIndependent, .unknown)])
    func twoOneAddressServersTestTheMapping(_ natMapping: MappingBehavior, _ found: MappingBehavior, _ type: NATType) throws {
        var network = VirtualNetwork()
        network.server = .oneAddress
        network.nat = SimulatedNAT(mapping: natMapping, filtering: .addressAndPortDependent,
                                   publicAddress: .v4(IPv4Address(198, 51, 100, 1)))
        let report = try network.run(servers: [network.primary, network.alternate]).result.get()
        #expect(report.mapping == found)
        #expect(report.natType == type)
        #expect(report.filtering == .unknown)
        #expect(!report.complete)
        #expect(report.servers.count == 2)
        #expect(report.servers.allSatisfy { $0.roundTrip == .milliseconds(20) })
    }

    @Test func serverIgnoringChangeRequestDoesNotFakeAFullCone() throws {
        var network = VirtualNetwork()
        network.server = .ignoresChangeRequest
        network.nat = SimulatedNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent,
                                   publicAddress: .v4(IPv4Address(198, 51, 100, 1)))
        let report = try network.run().result.get()
        #expect(report.filtering == .unknown)
        #expect(!report.complete)
        #expect(report.natType == .unknown)
        #expect(report.notes.contains { $0.contains("ignored CHANGE-REQUEST") })
    }

    @Test func straysAndLateAnswersAreIgnored() throws {
        var network = VirtualNetwork()
        var stray = Message(type: .bindingSuccess, transactionID: .random())
        stray.attributes = [.xorMappedAddress(Endpoint("192.0.2.99:1")!)]
        network.strays = [(stray, network.primary), (Message.bindingRequest(), network.primary)]
        let report = try network.run().result.get()
        #expect(report.publicEndpoint == network.local)
    }

    @Test func timersThatOutliveTheirTransactionAreIgnored() {
        var discovery = Discovery(servers: [Endpoint("192.0.2.1:3478")!], localEndpoint: Endpoint("203.0.113.10:1")!,
                                  localAddresses: [])
        _ = discovery.start(at: .zero)
        #expect(discovery.handle(.timerFired(.random()), at: .seconds(1)).isEmpty)
        #expect(discovery.phase == .binding)
    }
}

@Suite struct BindingResponderTests {
    let responder = BindingResponder(primary: Endpoint("192.0.2.1:3478")!, alternate: Endpoint("192.0.2.2:3479")!)
    let client = Endpoint("198.51.100.7:40000")!

    @Test func answersWithXorMappedResponseOriginAndOtherAddress() throws {
        let request = Message.bindingRequest()
        let reply = try #require(responder.respond(to: request.encoded(), from: client, on: responder.primary))
        let response = try Message(decoding: reply.bytes)
        #expect(response.type == .bindingSuccess)
        #expect(response.transactionID == request.transactionID)
        #expect(response.attributes.contains(.xorMappedAddress(client)))
        #expect(response.responseOrigin == responder.primary)
        #expect(response.otherAddress == Endpoint("192.0.2.2:3479"))
        #expect(response.hasFingerprint)
        #expect(reply.from == responder.primary)
    }

    @Test(arguments: [(false, false, "192.0.2.1:3478"), (true, false, "192.0.2.2:3478"),
                      (false, true, "192.0.2.1:3479"), (true, true, "192.0.2.2:3479")])
    func honoursChangeRequest(_ changeIP: Bool, _ changePort: Bool, _ source: String) throws {
        let request = Message.bindingRequest(changeIP: changeIP, changePort: changePort)
        let reply = try #require(responder.respond(to: request.encoded(), from: client, on: responder.primary))
        #expect(reply.from == Endpoint(source))
        #expect(try Message(decoding: reply.bytes).responseOrigin == Endpoint(source))
    }

    @Test func refusesChangeRequestWithoutAnAlternate() throws {
        let single = BindingResponder(primary: Endpoint("192.0.2.1:3478")!, alternate: nil)
        let reply = try #require(single.respond(to: Message.bindingRequest(changeIP: true).encoded(), from: client, on: single.primary))
        let response = try Message(decoding: reply.bytes)
        #expect(response.type == .bindingError)
        #expect(response.errorCode?.code == 420)
        #expect(response.attributes.contains(.unknownAttributes([0x0003])))
    }

    @Test func answersClassicClientsInTheirDialect() throws {
        // The request Debian's `stun` 0.97 sends: no magic cookie, a 128-bit id, CHANGE-REQUEST 0.
        let request = hex("0001 0008 015dd903 a43da10d 787d0819 8cf82762 0003 0004 00000000")
        let reply = try #require(responder.respond(to: request, from: client, on: responder.primary))
        #expect(Array(reply.bytes[4..<20]) == Array(request[4..<20]))
        let response = try Message(decoding: reply.bytes, allowingClassic: true)
        #expect(response.classicCookie == 0x015D_D903)
        #expect(response.attributes.contains(.mappedAddress(client)))
        #expect(response.attributes.contains(.changedAddress(Endpoint("192.0.2.2:3479")!)))
        #expect(!response.hasFingerprint)
        #expect(throws: DecodingError.badMagicCookie(0x015D_D903)) { try Message(decoding: request) }
    }

    @Test func ignoresNonRequestsAndGarbage() {
        #expect(responder.respond(to: [1, 2, 3], from: client, on: responder.primary) == nil)
        let response = Message(type: .bindingSuccess, transactionID: .random()).encoded()
        #expect(responder.respond(to: response, from: client, on: responder.primary) == nil)
    }

    @Test func answersUnknownComprehensionRequiredAttributesWith420() throws {
        let reply = try #require(responder.respond(to: RFC5769.request, from: client, on: responder.primary))
        let response = try Message(decoding: reply.bytes)
        #expect(response.errorCode?.code == 420)
        #expect(response.attributes.contains(.unknownAttributes([0x0024])))
    }
}

@Suite struct DetectionChartTests {
    @Test func chartIsValidAndDrawsItsPhases() {
        let chart = DetectionChart.chart
        #expect(chart.rows.count == 6)
        let dot = chart.dot()
        for state in ["binding", "filtering", "mapping", "done", "failed"] { #expect(dot.contains(state)) }
        #expect(dot.contains("server with two addresses"))
    }

    @Test func discoveryWalksThePhasesInOrder() throws {
        var discovery = Discovery(servers: [Endpoint("192.0.2.1:3478")!], localEndpoint: Endpoint("203.0.113.10:1")!,
                                  localAddresses: [])
        #expect(discovery.phase == .idle)
        let sends = discovery.start(at: .zero).compactMap { action -> [UInt8]? in
            if case .send(let bytes, _) = action { return bytes }
            return nil
        }
        #expect(discovery.phase == .binding)
        let request = try Message(decoding: try #require(sends.first))
        var response = Message(type: .bindingSuccess, transactionID: request.transactionID)
        response.attributes = [.xorMappedAddress(Endpoint("198.51.100.1:1")!), .otherAddress(Endpoint("192.0.2.2:3479")!)]
        let next = discovery.handle(.received(response, from: Endpoint("192.0.2.1:3478")!), at: .milliseconds(5))
        #expect(discovery.phase == .filtering)
        let changeRequests = try next.compactMap { action -> Message? in
            if case .send(let bytes, _) = action { return try Message(decoding: bytes) }
            return nil
        }.compactMap(\.changeRequest)
        #expect(changeRequests.map(\.changeIP) == [true, false])
        #expect(changeRequests.map(\.changePort) == [true, true])
    }

    @Test func noServerAnsweringEndsInFailed() {
        var discovery = Discovery(servers: [], localEndpoint: Endpoint("203.0.113.10:1")!, localAddresses: [])
        let actions = discovery.start(at: .zero)
        #expect(discovery.phase == .failed)
        #expect(actions.contains { if case .finished(.failure) = $0 { true } else { false } })
    }
}

/// Malformed datagrams are kept per destination of a request only: a flood from many sources
/// leaves the discovery's memory as it was, and a silent server's own garbage is still named.
@Suite struct DiscoveryBoundTests {
    /// Bytes the allocator has handed out, in its arenas and in chunks of their own (mmap).
    static func allocatedBytes() -> Int {
        let info = mallinfo2()
        return Int(info.uordblks) + Int(info.hblkhd)
    }

    @Test func malformedDatagramsFromStrangersAreNotKept() throws {
        let server = Endpoint("192.0.2.1:3478")!
        var discovery = Discovery(servers: [server], localEndpoint: Endpoint("0.0.0.0:51820")!, localAddresses: [])
        let started = discovery.start(at: .zero)
        guard case .armTimer(let id, _) = started.last else { Issue.record("no timer armed: \(started)"); return }
        let before = Self.allocatedBytes()
        for index in 0..<500_000 {
            let stranger = Endpoint(.v4(IPv4Address(203, 0, 113, UInt8(index & 0xFF))), UInt16(index >> 8 + 1))
            _ = discovery.handle(.undecodable(.notSTUN, from: stranger), at: .milliseconds(1))
        }
        let grown = Self.allocatedBytes() - before
        #expect(grown < 16 << 20, "500 000 strangers' datagrams took \(grown) bytes (other tests allocate meanwhile)")

        _ = discovery.handle(.undecodable(.notSTUN, from: server), at: .milliseconds(2))
        var failure: DiscoveryFailure?
        for attempt in 1...20 where failure == nil {
            for action in discovery.handle(.timerFired(id), at: .seconds(attempt)) {
                if case .finished(.failure(let found)) = action { failure = found }
            }
        }
        let text = try #require(failure, "the silent server's transaction never failed").description
        #expect(text.contains("after 7 tries (it sent 1 malformed datagram: "), "\(text)")
    }
}
