import Net
import StateChart

/// RFC 5780 NAT behaviour discovery as a pure state machine: feed it the answers and timer
/// expiries, it says what to send and when it is done. No sockets, no clock: times are given
/// with each event (any monotonic origin), so it runs as well in virtual time as on a real loop.
/// Its phases are the `DetectionChart` (run by a `Machine`); the transactions of each phase, with
/// their retransmission timers, are kept here.
///
/// Order of the tests (RFC 5780 §4.3–4.4), chosen so one test cannot open the hole another measures:
/// 1. Binding test I to every server, in parallel: mapped address, RTT, OTHER-ADDRESS.
/// 2. With a server that has an OTHER-ADDRESS (the first one in the list that has), both filtering
///    tests in parallel: CHANGE-REQUEST change-IP+port (answered → endpoint-independent filtering),
///    change-port (answered → address-dependent; neither → address-and-port-dependent).
///    They run before anything is sent to the alternate IP, which would open an address-dependent filter.
/// 3. Mapping tests II (alternate IP, primary port) and III (alternate IP and port), in parallel:
///    X2 = X1 → endpoint-independent, else X3 = X2 → address-dependent, else address-and-port-dependent.
public struct Discovery: Sendable {
    public enum Event: Sendable {
        /// A decoded STUN message arrived from `from`.
        case received(Message, from: Endpoint)
        /// A datagram arrived from `from` that is not valid STUN.
        case undecodable(DecodingError, from: Endpoint)
        /// The timer armed for transaction `id` went off.
        case timerFired(TransactionID)
    }

    public enum Action: Sendable, Equatable {
        case send([UInt8], to: Endpoint)
        case armTimer(TransactionID, after: Duration)
        case cancelTimer(TransactionID)
        case finished(Result<NATReport, DiscoveryFailure>)
    }

    public typealias Phase = DetectionState

    enum Probe: Hashable, Sendable {
        case binding(server: Int)
        case filteringChangeIPAndPort
        case filteringChangePort
        case mappingAlternateIP
        case mappingAlternateIPAndPort
    }

    enum Outcome: Sendable {
        case answered(Message, from: Endpoint, roundTrip: Duration)
        /// An error response.
        case refused(String)
        /// No answer in time.
        case failed(String)
    }

    public let servers: [Endpoint]
    public let localEndpoint: Endpoint
    /// The host's own addresses: a mapped address among them means no NAT.
    public let localAddresses: [IPAddress]
    public let policy: RetransmissionPolicy
    private var machine = Machine(chart: DetectionChart.chart, context: DetectionContext())
    public var phase: Phase { machine.state }

    /// The public endpoint the first answering server saw, as soon as its binding answer arrived
    /// (the behaviour tests go on): enough for a peer to punch toward.
    public var mappedEndpoint: Endpoint? {
        for index in servers.indices {
            if case .answered(let message, _, _) = outcomes[.binding(server: index)], let mapped = message.mappedAddress { return mapped }
        }
        return nil
    }
    private var pending: [TransactionID: (probe: Probe, transaction: ClientTransaction)] = [:]
    private var outcomes: [Probe: Outcome] = [:]
    /// Malformed datagrams per destination of a request, for the failure of a silent transaction.
    /// Its entries are made when a request is first sent somewhere, so it holds at most one per
    /// server and two for the alternate address; datagrams from anywhere else are not recorded
    /// (they could not name a silent server), and no flood of sources makes it grow.
    private var malformed: [Endpoint: (count: Int, last: DecodingError?)] = [:]
    private var primary: (index: Int, server: Endpoint, other: Endpoint, mapped: Endpoint)?
    private var generator = SystemRandomNumberGenerator()

    public init(
        servers: [Endpoint], localEndpoint: Endpoint, localAddresses: [IPAddress],
        policy: RetransmissionPolicy = RetransmissionPolicy()
    ) {
        self.servers = servers
        self.localEndpoint = localEndpoint
        self.localAddresses = localAddresses
        self.policy = policy
    }

    /// Starts discovery at `now`: binding requests to every server.
    public mutating func start(at now: Duration) -> [Action] {
        guard phase == .idle else { return [] }
        _ = machine.start()
        guard let transition = machine.handle(.start) else { return [] }
        if servers.isEmpty {
            machine.context.anyAnswered = false
            return run(machine.handle(.settled)?.actions ?? [], at: now)
        }
        return run(transition.actions, at: now)
    }

    /// Turns the chart's actions into sends, timers and the result.
    private mutating func run(_ chartActions: [DetectionAction], at now: Duration) -> [Action] {
        var actions: [Action] = []
        for action in chartActions {
            switch action {
            case .sendBindingTests:
                for (index, server) in servers.enumerated() {
                    actions += begin(.binding(server: index), to: server, at: now)
                }
            case .sendFilteringTests:
                guard let primary else { continue }
                actions += begin(.filteringChangeIPAndPort, to: primary.server, changeIP: true, changePort: true, at: now)
                actions += begin(.filteringChangePort, to: primary.server, changePort: true, at: now)
            case .sendMappingTests:
                guard let primary else { continue }
                actions += begin(.mappingAlternateIP, to: Endpoint(primary.other.address, primary.server.port), at: now)
                actions += begin(.mappingAlternateIPAndPort, to: primary.other, at: now)
            case .reportBehaviour:
                actions += finish(.success(fullReport()))
            case .reportPartial:
                actions += finish(.success(partialReport()))
            case .reportFailure:
                actions += finish(.failure(DiscoveryFailure(servers: serverReports())))
            }
        }
        return actions
    }

    public mutating func handle(_ event: Event, at now: Duration) -> [Action] {
        switch event {
        case .received(let message, let from):
            guard let entry = pending[message.transactionID], entry.transaction.isAnswered(by: message) else {
                return [] // a stray: late answer, another transaction, or noise
            }
            pending[message.transactionID] = nil
            if message.type.messageClass == .errorResponse {
                let error = message.errorCode.map { "\($0.code) \($0.reason)" } ?? "an error without ERROR-CODE"
                outcomes[entry.probe] = .refused("\(from) answered \(error)")
            } else {
                outcomes[entry.probe] = .answered(message, from: from, roundTrip: entry.transaction.roundTrip(at: now))
            }
            return [.cancelTimer(message.transactionID)] + advance(at: now)

        case .undecodable(let error, let from):
            guard malformed[from] != nil else { return [] }
            malformed[from]?.count += 1
            malformed[from]?.last = error
            return []

        case .timerFired(let id):
            guard var entry = pending[id] else { return [] } // a timer that outlived its transaction
            if entry.transaction.isExhausted {
                pending[id] = nil
                outcomes[entry.probe] = .failed(silence(entry.transaction))
                return advance(at: now)
            }
            let wait = entry.transaction.sent(at: now)
            pending[id] = entry
            return [.send(entry.transaction.request, to: entry.transaction.destination), .armTimer(id, after: wait)]
        }
    }

    private func silence(_ transaction: ClientTransaction) -> String {
        var text = "no response from \(transaction.destination) after \(transaction.attemptsSent) tries"
        if let (count, last) = malformed[transaction.destination], let last {
            text += " (it sent \(count) malformed datagram\(count == 1 ? "" : "s"): \(last))"
        }
        return text
    }

    private mutating func begin(_ probe: Probe, to destination: Endpoint, changeIP: Bool = false, changePort: Bool = false,
                                at now: Duration) -> [Action] {
        let request = Message.bindingRequest(
            transactionID: .random(using: &generator), changeIP: changeIP, changePort: changePort)
        var transaction = ClientTransaction(request: request, to: destination, policy: policy)
        let wait = transaction.sent(at: now)
        pending[transaction.id] = (probe, transaction)
        if malformed[destination] == nil { malformed[destination] = (0, nil) }
        return [.send(transaction.request, to: destination), .armTimer(transaction.id, after: wait)]
    }

    private func outstanding(_ probes: [Probe]) -> Bool { probes.contains { outcomes[$0] == nil } }

    /// Feeds `settled` to the chart once every transaction of the current phase has an outcome.
    private mutating func advance(at now: Duration) -> [Action] {
        let probes: [Probe]
        switch phase {
        case .binding: probes = servers.indices.map { Probe.binding(server: $0) }
        case .filtering: probes = [.filteringChangeIPAndPort, .filteringChangePort]
        case .mapping: probes = [.mappingAlternateIP, .mappingAlternateIPAndPort]
        case .idle, .done, .failed: return []
        }
        guard !outstanding(probes) else { return [] }
        if phase == .binding {
            let answered = servers.indices.compactMap { index -> (Int, Message)? in
                if case .answered(let message, _, _) = outcomes[.binding(server: index)], message.mappedAddress != nil {
                    return (index, message)
                }
                return nil
            }
            machine.context.anyAnswered = !answered.isEmpty
            if let (index, message) = answered.first(where: { usableOther($0.1, server: servers[$0.0]) != nil }),
               let other = usableOther(message, server: servers[index]), let mapped = message.mappedAddress {
                primary = (index, servers[index], other, mapped)
            }
            machine.context.rfc5780Server = primary != nil
        }
        guard let transition = machine.handle(.settled) else { return [] }
        return run(transition.actions, at: now)
    }

    /// OTHER-ADDRESS when it names a different IP of the same family (RFC 5780 needs two IPs).
    private func usableOther(_ message: Message, server: Endpoint) -> Endpoint? {
        guard let other = message.otherAddress, other.address != server.address,
              other.address.family == server.address.family else { return nil }
        return other
    }

    private mutating func finish(_ result: Result<NATReport, DiscoveryFailure>) -> [Action] {
        let cancels = pending.keys.sorted { ($0.high, $0.low) < ($1.high, $1.low) }.map { Action.cancelTimer($0) }
        pending = [:]
        return cancels + [.finished(result)]
    }

    private func serverReports() -> [ServerReport] {
        servers.enumerated().map { index, server in
            var report = ServerReport(server: server)
            switch outcomes[.binding(server: index)] {
            case .answered(let message, _, let roundTrip):
                report.roundTrip = roundTrip
                report.mappedAddress = message.mappedAddress
                report.otherAddress = message.otherAddress
                report.software = message.software
                if message.mappedAddress == nil { report.failure = "\(server) answered without a mapped address" }
            case .failed(let reason), .refused(let reason): report.failure = reason
            case nil: report.failure = "not tested"
            }
            return report
        }
    }

    private func isLocal(_ mapped: Endpoint) -> Bool { localAddresses.contains(mapped.address) }

    private func base(mapped: Endpoint) -> NATReport {
        NATReport(
            publicEndpoint: mapped, localEndpoint: localEndpoint, mapping: .unknown, filtering: .unknown,
            natType: .unknown, portPreserved: mapped.port == localEndpoint.port, complete: false, notes: [],
            servers: serverReports())
    }

    /// No server with two addresses: what the binding tests alone can tell.
    private func partialReport() -> NATReport {
        let reports = serverReports()
        let mappedAll = reports.compactMap { $0.mappedAddress }
        var report = base(mapped: mappedAll[0])
        report.notes.append("no server gave a usable OTHER-ADDRESS (RFC 5780 needs a server with two IP addresses): filtering not tested")
        let contacted = Set(reports.filter { $0.mappedAddress != nil }.map { $0.server.address })
        if isLocal(report.publicEndpoint) {
            report.mapping = .endpointIndependent
            report.natType = .open
            report.notes.append("the mapped address is local: no NAT")
        } else if Set(mappedAll).count > 1 {
            report.mapping = Set(mappedAll.map { $0.address }).count > 1 || contacted.count > 1 ? .dependent : .addressAndPortDependent
            report.natType = .symmetric
            report.notes.append("servers saw different public endpoints: the mapping depends on the destination")
        } else if contacted.count > 1 {
            report.mapping = .endpointIndependent
            report.natType = .unknown
            report.notes.append("\(contacted.count) server addresses saw the same public endpoint: mapping is endpoint-independent (address-level test only); NAT type needs the filtering test")
        } else {
            report.notes.append("one server address only: mapping not tested")
        }
        return report
    }

    private func answer(_ probe: Probe) -> (message: Message, from: Endpoint)? {
        if case .answered(let message, let from, _) = outcomes[probe] { return (message, from) }
        return nil
    }

    private func fullReport() -> NATReport {
        guard let primary else { return partialReport() }
        var report = base(mapped: primary.mapped)
        report.complete = true
        let server = primary.server, other = primary.other

        // Filtering: the answers must come from where the CHANGE-REQUEST asked, or the server ignored it.
        let both = answer(.filteringChangeIPAndPort), portOnly = answer(.filteringChangePort)
        if let both, both.from != other {
            report.filtering = .unknown
            report.complete = false
            report.notes.append("\(server) ignored CHANGE-REQUEST (change IP and port answered from \(both.from), not \(other)): filtering not tested")
        } else if let portOnly, portOnly.from != Endpoint(server.address, other.port) {
            report.filtering = .unknown
            report.complete = false
            report.notes.append("\(server) ignored CHANGE-REQUEST (change port answered from \(portOnly.from)): filtering not tested")
        } else if both != nil {
            report.filtering = .endpointIndependent
        } else if portOnly != nil {
            report.filtering = .addressDependent
        } else if case .refused(let reason) = outcomes[.filteringChangePort] {
            report.filtering = .unknown
            report.complete = false
            report.notes.append("CHANGE-REQUEST refused: \(reason)")
        } else {
            report.filtering = .addressAndPortDependent
        }

        // Mapping.
        let x1 = primary.mapped
        let x2 = answer(.mappingAlternateIP)?.message.mappedAddress
        let x3 = answer(.mappingAlternateIPAndPort)?.message.mappedAddress
        if isLocal(x1) {
            report.mapping = .endpointIndependent
            report.notes.append("the mapped address is local: no NAT")
        } else if let x2 {
            if x2 == x1 {
                report.mapping = .endpointIndependent
            } else if let x3 {
                report.mapping = x3 == x2 ? .addressDependent : .addressAndPortDependent
            } else {
                report.mapping = .dependent
                report.complete = false
                report.notes.append("mapping test III got no answer: mapping is dependent, kind unknown")
            }
        } else {
            report.mapping = .unknown
            report.complete = false
            report.notes.append("mapping test II got no answer from \(Endpoint(other.address, server.port))")
        }

        report.natType = isLocal(x1) ? .open : NATType(mapping: report.mapping, filtering: report.filtering)
        return report
    }
}
