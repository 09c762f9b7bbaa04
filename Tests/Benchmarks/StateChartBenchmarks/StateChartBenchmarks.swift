import Benchmark
import EventLoop
import Output
import Peer
import StateChart
import Time

/// Does nothing with actions: measures the machines and the scheduler alone.
final class DiscardingExecutor: ActionExecutor {
    typealias Spec = PeerChart
    var count = 0
    func execute(_ action: PeerAction, for id: MachineID) { count &+= 1 }
}

/// A machine in keepalive on a confirmed direct path.
func keepaliveMachine() -> Machine<PeerChart> {
    var machine = Machine(chart: PeerChart.chart(), context: PeerContext())
    _ = machine.start()
    _ = machine.handle(.candidatesKnown)
    machine.context.directPossible = true
    _ = machine.handle(.natKnown)
    _ = machine.handle(.punchAcked)
    machine.context.handshakeAge = .seconds(1)
    machine.context.pathConfirmed = true
    _ = machine.handle(.wireGuardRead)
    precondition(machine.state == .keepalive)
    return machine
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions],
        maxDuration: .seconds(2), maxIterations: 1_000_000
    )

    // One iteration = one transition of a pure machine (a cycle keepalive → punching → direct →
    // keepalive, external transitions with guards, effects, entry and exit actions).
    Benchmark("Machine transition (pure)", configuration: .init(scalingFactor: .mega)) { benchmark in
        var machine = keepaliveMachine()
        machine.context.pathConfirmed = true
        let cycle: [PeerEvent] = [.endpointChanged, .punchAcked, .wireGuardRead]
        var actions = 0
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            if let transition = machine.handle(cycle[iteration % 3]) { actions &+= transition.actions.count }
            machine.context.pathConfirmed = true
        }
        benchmark.stopMeasurement()
        blackHole(actions)
        precondition(actions > 0)
    }

    // One iteration = one timer firing in a scheduler running 10,000 peer machines in keepalive,
    // in steady state: each machine's liveness poll fires every 10 s, executes readHandshake and
    // re-arms. Deadlines are spread, so each firing is its own wake-up (no coalescing).
    Benchmark("Scheduler timer firing (10,000 machines)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let clock = VirtualClock()
        let executor = DiscardingExecutor()
        let logger = Logger(label: "bench", output: LogOutput(level: .critical))
        let scheduler = Scheduler(chart: PeerChart.chart(), clock: clock, executor: executor,
                                  coalescingWindow: .zero, logger: logger)
        for index in 0..<10_000 {
            let id = scheduler.add(name: "peer\(index)", context: PeerContext())
            scheduler.post(.candidatesKnown, to: id)
            scheduler.updateContext(of: id) { $0.directPossible = true }
            scheduler.post(.natKnown, to: id)
            scheduler.post(.punchAcked, to: id)
            scheduler.updateContext(of: id) { $0.pathConfirmed = true; $0.handshakeAge = .seconds(1) }
            scheduler.post(.wireGuardRead, to: id)
            clock.now += 1_000_000  // one peer a millisecond: spread deadlines
        }
        // Reach the steady state: the timers of the states each machine passed through come due
        // and are dropped as stale, and the one-shot upgrade checks fire.
        scheduler.runVirtual(clock, until: clock.now + 31_000_000_000)
        var fired = 0
        benchmark.startMeasurement()
        while fired < benchmark.scaledIterations.count, let next = scheduler.nextDeadline {
            clock.now = next
            fired += scheduler.fireDueTimers()
        }
        benchmark.stopMeasurement()
        precondition(fired >= benchmark.scaledIterations.count)
        blackHole(executor.count)
    }
}
