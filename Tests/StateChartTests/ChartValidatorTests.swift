import Testing
@testable import StateChart

/// Charts built wrong on purpose.
@Suite struct ChartValidatorTests {
    typealias T = Turnstile

    @Test func aSoundChartHasNoProblems() {
        #expect(throws: Never.self) { try T.chart() }
    }

    @Test func everyProblemIsReportedAtOnce() {
        let rows: [Row<T>] = [
            Row(.locked, on: .coin, to: .locked),          // locked has no way out: only a self-loop
            Row(.locked, on: .push, stay: [.beep]),
            Row(.locked, on: .push, stay: [.beep]),        // defined twice without a guard
            Row(.broken, on: .repair, to: .locked),        // broken is final but has an exit
            Row(.unlocked, on: .coin, to: .locked),
            Row(.unlocked, on: .push, to: .locked),
            Row(.unlocked, on: .push, when: T.paid, to: .locked), // after an unguarded row: never fires
        ]
        let timeouts: [Timeout<T>] = [
            Timeout(.locked, after: .fixed(.seconds(1)), fire: .idle), // nothing in locked handles idle
        ]
        let problems = Chart<T>.validate(
            initial: .locked, states: [StateInfo(.broken, final: true)], rows: rows, timeouts: timeouts)
        #expect(Set(problems) == [
            .unreachable(state: "unlocked"),
            .unreachable(state: "broken"),
            .noWayOut(state: "locked"),
            .finalStateHasExits(state: "broken"),
            .ambiguous(state: "locked", event: "push", guard: nil),
            .shadowed(state: "unlocked", event: "push", guard: "paid"),
            .unhandledTimeout(state: "locked", event: "idle"),
        ])
        #expect(problems.count == 7)
    }

    @Test func theSameGuardTwiceIsAmbiguous() {
        let rows: [Row<T>] = [
            Row(.locked, on: .coin, when: T.paid, to: .unlocked),
            Row(.locked, on: .coin, when: T.paid, to: .broken),
            Row(.unlocked, on: .push, to: .locked),
        ]
        let problems = Chart<T>.validate(initial: .locked, states: [StateInfo(.broken, final: true)], rows: rows, timeouts: [])
        #expect(problems == [.ambiguous(state: "locked", event: "coin", guard: "paid")])
    }

    @Test func distinctGuardsAndAnElseRowAreFine() {
        let rows: [Row<T>] = [
            Row(.locked, on: .coin, when: T.paid, to: .unlocked),
            Row(.locked, on: .coin, when: !T.paid, to: .broken),
            Row(.locked, on: .coin, to: .locked),
            Row(.unlocked, on: .push, to: .locked),
        ]
        #expect(Chart<T>.validate(initial: .locked, states: [StateInfo(.broken, final: true)], rows: rows, timeouts: []).isEmpty)
    }

    @Test func aTimeoutThatNeverFiresIsAProblem() {
        let rows: [Row<T>] = [
            Row(.locked, on: .coin, to: .unlocked), Row(.unlocked, on: .idle, to: .locked),
            Row(.locked, on: .kick, to: .broken),
        ]
        let timeouts: [Timeout<T>] = [Timeout(.unlocked, every: .fixed(.zero), times: 3, fire: .idle)]
        let problems = Chart<T>.validate(initial: .locked, states: [StateInfo(.broken, final: true)], rows: rows, timeouts: timeouts)
        #expect(problems == [.badTimeout(state: "unlocked", event: "idle")])
    }

    @Test func rawValuesMustBeDense() {
        enum Sparse: ChartSpec {
            enum State: Int, ChartState { case a = 0, b = 2
        var description: String { switch self { case .a: "a"; case .b: "b" } }
    }
            enum Event: Int, ChartEvent { case go
        var description: String { switch self { case .go: "go" } }
    }
            typealias Action = Int
            typealias Context = Int
        }
        let problems = Chart<Sparse>.validate(initial: .a, states: [], rows: [Row(.a, on: .go, to: .b)], timeouts: [])
        #expect(problems == [.rawValuesNotDense(type: "State")])
    }

    @Test func buildingAnInvalidChartThrowsWithEveryProblemListed() {
        do {
            _ = try Chart<T>(name: "bad", initial: .locked, rows: [Row(.locked, on: .coin, stay: [])])
            Issue.record("an invalid chart was built")
        } catch {
            #expect(error.problems.count == 5)
            #expect(error.description.hasPrefix("chart 'bad' is invalid:\n  - "))
            #expect(error.description.contains("state 'unlocked' is unreachable from the initial state"))
        }
    }
}
