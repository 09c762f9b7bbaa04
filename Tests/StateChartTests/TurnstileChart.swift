import StateChart

/// A small chart for engine tests: a coin-operated turnstile with a timeout and a counter.
enum Turnstile: ChartSpec {
    enum State: Int, ChartState { case locked, unlocked, broken
        var description: String { switch self { case .locked: "locked"; case .unlocked: "unlocked"; case .broken: "broken" } }
    }
    enum Event: Int, ChartEvent { case coin, push, kick, idle, repair
        var description: String { switch self { case .coin: "coin"; case .push: "push"; case .kick: "kick"; case .idle: "idle"; case .repair: "repair" } }
    }
    enum Action: Sendable, Equatable, CustomStringConvertible { case unlock, lock, thank, alarm, beep, exitLocked, enterLocked
        var description: String { switch self { case .unlock: "unlock"; case .lock: "lock"; case .thank: "thank"; case .alarm: "alarm"; case .beep: "beep"; case .exitLocked: "exitLocked"; case .enterLocked: "enterLocked" } }
    }
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
