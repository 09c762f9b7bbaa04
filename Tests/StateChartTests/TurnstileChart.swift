import StateChart

/// A small chart for engine tests: a coin-operated turnstile with a timeout and a counter.
enum Turnstile: ChartSpec {
    enum State: Int, ChartState { case locked, unlocked, broken }
    enum Event: Int, ChartEvent { case coin, push, kick, idle, repair }
    enum Action: Sendable, Equatable { case unlock, lock, thank, alarm, beep, exitLocked, enterLocked }
    struct Context: Sendable { var coins = 0; var entries = 0 }

    static let paid = Guard<Context>("paid") { $0.coins > 0 }

    static func chart() throws -> Chart<Turnstile> {
        try Chart(
            name: "turnstile", initial: .locked,
            states: [
                StateInfo(.locked, entry: [.enterLocked], exit: [.exitLocked], onEntry: { $0.entries += 1 }),
                StateInfo(.broken, final: true),
            ],
            rows: [
                Row(.locked, on: .coin, to: .unlocked, do: [.unlock], update: { $0.coins += 1 }),
                Row(.locked, on: .push, stay: [.beep]),
                Row(.locked, on: .kick, to: .broken, do: [.alarm]),
                Row(.unlocked, on: .push, when: paid, to: .locked, do: [.lock]),
                Row(.unlocked, on: .push, to: .unlocked),
                Row(.unlocked, on: .coin, stay: [.thank], update: { $0.coins += 1 }),
                Row(.unlocked, on: .idle, to: .locked, do: [.lock]),
            ],
            timeouts: [Timeout(.unlocked, after: .fixed(.seconds(5)), fire: .idle)]
        )
    }
}
