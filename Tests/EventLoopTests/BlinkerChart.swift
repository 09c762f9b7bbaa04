import StateChart

/// A chart for scheduler tests: a light that blinks on a repeating timer until told to stop or
/// until it gives up after a one-shot timeout.
enum Blinker: ChartSpec {
    enum State: Int, ChartState { case off, blinking, done
        var description: String { switch self { case .off: "off"; case .blinking: "blinking"; case .done: "done" } }
    }
    enum Event: Int, ChartEvent { case start, tick, stop, giveUp, poke
        var description: String { switch self { case .start: "start"; case .tick: "tick"; case .stop: "stop"; case .giveUp: "giveUp"; case .poke: "poke" } }
    }
    enum Action: Sendable, Equatable, CustomStringConvertible { case flash, finish, poked
        var description: String { switch self { case .flash: "flash"; case .finish: "finish"; case .poked: "poked" } }
    }
    struct Context: Sendable { var wait: Duration = .seconds(1) }

    static func chart(interval: Duration = .milliseconds(100), ticks: Int = 4, giveUp: Duration = .seconds(1)) -> Chart<Blinker> {
        try! Chart(
            name: "blinker", initial: .off,
            states: [StateInfo(.done, entry: [.finish], final: true)],
            rows: [
                Row(.off, on: .start, to: .blinking),
                Row(.off, on: .poke, stay: [.poked]),
                Row(.blinking, on: .tick, stay: [.flash]),
                Row(.blinking, on: .poke, stay: [.poked]),
                Row(.blinking, on: .stop, to: .off),
                Row(.blinking, on: .giveUp, to: .done),
            ],
            timeouts: [
                Timeout(.off, after: .computed("wait") { $0.wait }, fire: .start),
                Timeout(.blinking, every: .fixed(interval), times: ticks, fire: .tick),
                Timeout(.blinking, after: .fixed(giveUp), fire: .giveUp),
            ]
        )
    }
}
