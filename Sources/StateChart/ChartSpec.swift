/// A state of a chart: a payload-free enum whose raw values are 0, 1, 2, … in declaration order,
/// so the engine can index its tables by state, and whose description is the case's name (written
/// out: charts are drawn and traced in builds without reflection).
public protocol ChartState: Hashable, CaseIterable, RawRepresentable, Sendable, CustomStringConvertible where RawValue == Int {}

/// An event of a chart: a payload-free enum with raw values 0, 1, 2, …, like ``ChartState``.
/// Data that comes with an event lives in the machine's context, set before the event is handled.
public protocol ChartEvent: Hashable, CaseIterable, RawRepresentable, Sendable, CustomStringConvertible where RawValue == Int {}

/// The types one chart is made of: its states, events, actions and the extended state (context)
/// that guards read and effects update.
public protocol ChartSpec {
    associatedtype State: ChartState
    associatedtype Event: ChartEvent
    /// What the outside world must do when a transition fires ("send a punch burst", …).
    associatedtype Action: Sendable, CustomStringConvertible
    /// The machine's extended state: counters, flags and data the guards need.
    associatedtype Context: Sendable
}
