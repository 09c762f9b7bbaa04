import Net

/// How a NAT chooses the public endpoint of a flow (RFC 4787 §4.1, RFC 5780 §4.3).
public enum MappingBehavior: String, Sendable, CaseIterable {
    case endpointIndependent = "endpoint-independent"
    case addressDependent = "address-dependent"
    case addressAndPortDependent = "address-and-port-dependent"
    /// Two servers reached from different mappings, but not enough to say which of the two dependent kinds.
    case dependent = "dependent"
    case unknown
}

/// Which inbound packets a NAT lets through to a mapping (RFC 4787 §5, RFC 5780 §4.4).
public enum FilteringBehavior: String, Sendable, CaseIterable {
    case endpointIndependent = "endpoint-independent"
    case addressDependent = "address-dependent"
    case addressAndPortDependent = "address-and-port-dependent"
    case unknown
}

/// The seed's names for NATs (classic RFC 3489 terms), derived from mapping and filtering.
public enum NATType: String, Sendable, CaseIterable {
    /// No NAT: the public address is a local one.
    case open
    /// Endpoint-independent mapping and filtering.
    case fullCone = "full cone"
    /// Endpoint-independent mapping, address-dependent filtering.
    case restrictedCone = "restricted cone"
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    case portRestrictedCone = "port-restricted cone"
    /// Mapping depends on the destination.
    case symmetric
    case unknown

    /// The name for a mapping/filtering pair; `.unknown` when either is unknown and the pair does not decide.
    public init(mapping: MappingBehavior, filtering: FilteringBehavior) {
        switch (mapping, filtering) {
        case (.addressDependent, _), (.addressAndPortDependent, _), (.dependent, _): self = .symmetric
        case (.endpointIndependent, .endpointIndependent): self = .fullCone
        case (.endpointIndependent, .addressDependent): self = .restrictedCone
        case (.endpointIndependent, .addressAndPortDependent): self = .portRestrictedCone
        default: self = .unknown
        }
    }
}

extension NATType: CustomStringConvertible {
    /// The type's name, as logs, status and netcheck show it.
    public var description: String { rawValue }
}

extension NATType {
    /// The type's number in the control protocol (a member announces its own).
    public var wireValue: UInt8 {
        switch self {
        case .unknown: 0
        case .open: 1
        case .fullCone: 2
        case .restrictedCone: 3
        case .portRestrictedCone: 4
        case .symmetric: 5
        }
    }

    /// The type numbered `wireValue` in the control protocol; `nil` for a number no type has.
    public init?(wireValue: UInt8) {
        guard let type = Self.allCases.first(where: { $0.wireValue == wireValue }) else { return nil }
        self = type
    }
}

/// What one server told us in the basic binding test.
public struct ServerReport: Equatable, Sendable {
    public var server: Endpoint
    /// Round-trip time of the answer, from the latest transmission; `nil` when none came.
    public var roundTrip: Duration?
    public var mappedAddress: Endpoint?
    public var otherAddress: Endpoint?
    public var software: String?
    /// Why the server gave no usable answer.
    public var failure: String?
}

/// The outcome of behaviour discovery.
public struct NATReport: Equatable, Sendable {
    /// The public (server-reflexive) endpoint seen by the first server that answered.
    public var publicEndpoint: Endpoint
    /// The local endpoint probed from.
    public var localEndpoint: Endpoint
    public var mapping: MappingBehavior
    public var filtering: FilteringBehavior
    public var natType: NATType
    /// Whether the NAT kept the local port as the public port.
    public var portPreserved: Bool
    /// Whether the full RFC 5780 test ran (a server with two addresses that honoured CHANGE-REQUEST).
    public var complete: Bool
    /// What could not be tested and why, and how the answer was reached when incomplete.
    public var notes: [String]
    public var servers: [ServerReport]
}

extension NATReport {
    /// This report, from a run on the port that gave `earlier` in a run before. Behind the same
    /// public address (the same NAT) the earlier run's answers stand where this run's cannot be
    /// trusted; at a new public address the NAT is another one, and this run counts whole.
    /// - Filtering: the tests tell the filter only on a port that sent nothing to the server's
    ///   other address for the NAT's flow lifetime (up to minutes). The earlier run's mapping
    ///   tests did, and the answer from there now passes any filter.
    /// - Mapping: a test lost under loss leaves it unknown, which says nothing new.
    public func keepingEarlier(_ earlier: NATReport?) -> NATReport {
        guard let earlier, earlier.publicEndpoint.address == publicEndpoint.address, natType != .open else { return self }
        var report = self
        if earlier.filtering != .unknown, filtering != earlier.filtering {
            report.filtering = earlier.filtering
            report.notes.append("filtering kept from the run before on this port (\(earlier.filtering.rawValue)): that run's tests of "
                                + "the server's other address opened the filter this run would measure (\(filtering.rawValue))")
        }
        if mapping == .unknown, earlier.mapping != .unknown {
            report.mapping = earlier.mapping
            report.notes.append("mapping kept from the run before on this port (\(earlier.mapping.rawValue)): this run's tests went unanswered")
        }
        guard report.filtering != filtering || report.mapping != mapping else { return self }
        report.natType = NATType(mapping: report.mapping, filtering: report.filtering)
        return report
    }
}

/// Why discovery produced no answer at all.
public struct DiscoveryFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var servers: [ServerReport]

    public var description: String {
        servers.map { "\($0.server): \($0.failure ?? "no answer")" }.joined(separator: "; ")
    }
}
