import ChartTestSupport
import Foundation
import Output
import StateChart
import Testing
@testable import EventLoop
import Time

@Suite struct SchedulerTests {
    func make(_ chart: Chart<Blinker> = Blinker.chart(), window: Duration = .zero)
        -> (Scheduler<RecordingExecutor<Blinker>>, VirtualClock, RecordingExecutor<Blinker>) {
        let clock = VirtualClock()
        let executor = RecordingExecutor<Blinker>()
        let scheduler = Scheduler(chart: chart, clock: clock, executor: executor, coalescingWindow: window)
        return (scheduler, clock, executor)
    }

    @Test func timeoutsFireAtTheirTimesInVirtualTime() {
        let (scheduler, clock, executor) = make()
        var log: [(Nanoseconds, Blinker.Event, Blinker.State)] = []
        scheduler.onTransition = { log.append(($0.time, $0.transition.event, $0.transition.to)) }
        let id = scheduler.add(name: "a", context: .init())
        scheduler.runVirtual(clock, until: 10_000_000_000)
        let ms: Nanoseconds = 1_000_000
        #expect(log.map(\.0) == [1000, 1100, 1200, 1300, 1400, 2000].map { $0 * ms })
        #expect(log.map(\.1) == [.start, .tick, .tick, .tick, .tick, .giveUp])
        #expect(scheduler.machine(id)?.state == .done)
        #expect(executor.executed.map(\.action) == [.flash, .flash, .flash, .flash, .finish])
        #expect(scheduler.nextDeadline == nil, "a final state arms nothing, repeats ran out")
    }

    @Test func leavingAStateCancelsItsTimersAndStaleOnesAreIgnored() {
        let (scheduler, clock, executor) = make()
        let id = scheduler.add(name: "a", context: .init(wait: .seconds(1)))
        scheduler.runVirtual(clock, until: 1_150_000_000)      // started at 1 s, one tick at 1.1 s
        #expect(executor.executed.count == 1)
        scheduler.updateContext(of: id) { $0.wait = .seconds(60) }
        scheduler.post(.stop, to: id)                           // back to off: ticks and giveUp are stale
        scheduler.runVirtual(clock, until: 30_000_000_000)
        #expect(executor.executed.count == 1, "no tick fired after the state was left")
        #expect(scheduler.machine(id)?.state == .off)
        #expect(scheduler.statistics.staleTimers == 2, "the pending tick and the giveUp timer were dropped unfired")
    }

    /// A removed machine's slot goes to the next one added, under a new generation: the tables stay
    /// as large as the most machines alive at once, and nothing of the old machine reaches the new.
    @Test func removedSlotsAreReusedAndTheOldIDNamesNothing() {
        let (scheduler, clock, executor) = make()
        let old = scheduler.add(name: "old", context: .init(wait: .seconds(1)))
        scheduler.post(.poke, to: old, after: .milliseconds(500))
        scheduler.remove(old)
        let new = scheduler.add(name: "new", context: .init(wait: .seconds(5)))
        #expect(new.index == old.index && new != old)
        #expect(scheduler.machine(old) == nil && scheduler.machine(new) != nil)
        scheduler.post(.start, to: old)
        scheduler.updateContext(of: old) { $0.wait = .zero }
        scheduler.runVirtual(clock, until: 4_999_000_000)
        #expect(scheduler.machine(new)?.state == .off, "the old machine's start timer (1 s) and posts did not reach it")
        #expect(executor.executed.isEmpty, "the old machine's poke at 0.5 s was dropped")
        for round in 0..<1_000 {
            let id = scheduler.add(name: "member \(round)", context: .init())
            scheduler.remove(id)
        }
        #expect(scheduler.machines.count == 2 && scheduler.names.count == 2 && scheduler.enteredAt.count == 2,
                "a thousand joins and leaves reused one slot")
    }

    @Test func computedDelaysReadTheContextOnEntry() {
        let (scheduler, clock, _) = make()
        let id = scheduler.add(name: "a", context: .init(wait: .seconds(7)))
        scheduler.runVirtual(clock, until: 6_999_000_000)
        #expect(scheduler.machine(id)?.state == .off)
        scheduler.runVirtual(clock, until: 7_000_000_000)
        #expect(scheduler.machine(id)?.state == .blinking)
    }

    @Test func eventsPostedForLaterFireInAnyState() {
        let (scheduler, clock, executor) = make()
        let id = scheduler.add(name: "a", context: .init(wait: .seconds(1)))
        scheduler.post(.poke, to: id, after: .milliseconds(500))
        scheduler.post(.poke, to: id, after: .milliseconds(1250))
        scheduler.runVirtual(clock, until: 1_300_000_000)
        #expect(executor.executed.map(\.action) == [.poked, .flash, .flash, .poked, .flash])
    }

    @Test func eventsPostedDuringActionsAreHandledInOrder() {
        final class Chain: ActionExecutor {
            typealias Spec = Blinker
            weak var scheduler: Scheduler<Chain>?
            var seen: [Blinker.Action] = []
            func execute(_ action: Blinker.Action, for id: MachineID) {
                seen.append(action)
                if action == .poked, seen.count < 3 { scheduler?.post(.poke, to: id) }
            }
        }
        let chain = Chain()
        let scheduler = Scheduler(chart: Blinker.chart(), clock: VirtualClock(), executor: chain)
        chain.scheduler = scheduler
        let id = scheduler.add(name: "a", context: .init())
        scheduler.post(.poke, to: id)
        #expect(chain.seen == [.poked, .poked, .poked])
        #expect(scheduler.statistics.transitions == 3)
    }

    @Test func timersFallingCloseTogetherFireInOneWakeup() {
        let (scheduler, clock, _) = make(window: .milliseconds(10))
        for index in 0..<1000 {
            // Starts spread over 5 ms, all inside one 10 ms coalescing window.
            scheduler.add(name: "m\(index)", context: .init(wait: .microseconds(1000 + 5 * index)))
        }
        clock.now = 1_000_000
        #expect(scheduler.fireDueTimers() == 1000)
        #expect(scheduler.statistics.wakeups == 1)
        #expect(scheduler.fireDueTimers() == 0)
    }

    @Test func transitionsAreTracedAsOneStructuredLineEach() {
        let lines = Lines()
        let logger = Logger(label: "test", output: LogOutput(level: .info) { lines.append($0) })
        let clock = VirtualClock()
        let scheduler = Scheduler(chart: Blinker.chart(ticks: 1), clock: clock, executor: RecordingExecutor<Blinker>(),
                                  coalescingWindow: .zero, logger: logger)
        scheduler.add(name: "peer-a", context: .init())
        scheduler.runVirtual(clock, until: 5_000_000_000)
        #expect(lines.all == [
            "transition actions=\"\" elapsed_ms=1000.000 event=start from=off peer=peer-a to=blinking",
            "transition actions=finish elapsed_ms=1000.000 event=giveUp from=blinking peer=peer-a to=done",
        ], "internal transitions (tick) are traced at debug level only")
    }
}

/// The lines a logger wrote, without time and logger name: `msg field=value …`.
final class Lines: @unchecked Sendable {
    var all: [String] = []

    func append(_ line: String) {
        let fields = line.split(separator: " ").filter { !$0.hasPrefix("time=") && !$0.hasPrefix("level=") && !$0.hasPrefix("logger=") }
        all.append(fields.map { $0.hasPrefix("msg=") ? String($0.dropFirst(4)) : String($0) }.joined(separator: " ")
            .trimmingCharacters(in: .newlines))
    }
}
