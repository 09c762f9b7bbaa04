import StateChart

/// The phases of NAT behaviour discovery (RFC 5780), as a chart: the Detecting sub-chart of the
/// peer chart. Each phase's transactions (with their retransmissions) run inside `Discovery`;
/// the chart moves on when all of a phase's transactions have settled (answered or timed out).
///
///     idle ─start→ binding ─settled [!answered]→ failed
///                  binding ─settled [two addresses]→ filtering ─settled→ mapping ─settled→ done (report)
///                  binding ─settled→ done (partial report)
public enum DetectionChart: ChartSpec {
    public typealias State = DetectionState
    public typealias Event = DetectionEvent
    public typealias Action = DetectionAction
    public typealias Context = DetectionContext

    static let answered = Guard<DetectionContext>("a server answered") { $0.anyAnswered }
    static let twoAddresses = Guard<DetectionContext>("server with two addresses") { $0.rfc5780Server }

    public static let chart: Chart<DetectionChart> = { () -> Chart<DetectionChart> in
        let rows: [Row<DetectionChart>] = [
            Row(.idle, on: .start, to: .binding),
            Row(.binding, on: .settled, when: !answered, to: .failed),
            Row(.binding, on: .settled, when: twoAddresses, to: .filtering),
            Row(.binding, on: .settled, to: .done, do: [.reportPartial]),
            Row(.filtering, on: .settled, to: .mapping),
            Row(.mapping, on: .settled, to: .done, do: [.reportBehaviour]),
        ]
        let states: [StateInfo<DetectionChart>] = [
            StateInfo(.binding, entry: [.sendBindingTests]),
            StateInfo(.filtering, entry: [.sendFilteringTests]),
            StateInfo(.mapping, entry: [.sendMappingTests]),
            StateInfo(.done, final: true),
            StateInfo(.failed, entry: [.reportFailure], final: true),
        ]
        do throws(ChartValidationError) {
            return try Chart(name: "detection", initial: .idle, states: states, rows: rows)
        } catch {
            preconditionFailure("the detection chart is checked by its tests: \(error)")
        }
    }()
}

public enum DetectionState: Int, ChartState {
    case idle
    /// Binding test I to every server: mapped address, RTT, OTHER-ADDRESS.
    case binding
    /// CHANGE-REQUEST tests (change IP and port; change port) to the RFC 5780 server.
    case filtering
    /// Binding tests to the alternate IP (primary port), and to the alternate IP and port.
    case mapping
    case done
    /// No server answered.
    case failed
}

extension DetectionState: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .idle: "idle"
        case .binding: "binding"
        case .filtering: "filtering"
        case .mapping: "mapping"
        case .done: "done"
        case .failed: "failed"
        }
    }
}

public enum DetectionEvent: Int, ChartEvent {
    case start
    /// Every transaction of the current phase was answered or timed out.
    case settled
}

extension DetectionEvent: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .start: "start"
        case .settled: "settled"
        }
    }
}

public enum DetectionAction: Sendable, Hashable {
    case sendBindingTests
    case sendFilteringTests
    case sendMappingTests
    /// Report mapping and filtering from the full RFC 5780 test.
    case reportBehaviour
    /// Report what the binding tests alone can tell.
    case reportPartial
    case reportFailure
}

extension DetectionAction: CustomStringConvertible {
    /// The case's name, as charts, logs and status show it.
    public var description: String {
        switch self {
        case .sendBindingTests: "sendBindingTests"
        case .sendFilteringTests: "sendFilteringTests"
        case .sendMappingTests: "sendMappingTests"
        case .reportBehaviour: "reportBehaviour"
        case .reportPartial: "reportPartial"
        case .reportFailure: "reportFailure"
        }
    }
}

public struct DetectionContext: Sendable, Equatable {
    /// Whether some server answered binding test I with a mapped address.
    public var anyAnswered = false
    /// Whether one of those servers gave a usable OTHER-ADDRESS.
    public var rfc5780Server = false
    public init() {}
}
