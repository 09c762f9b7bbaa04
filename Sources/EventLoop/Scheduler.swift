import Output
import StateChart
import Time

/// Runs many machines of one chart on one thread: delivers their events, arms and fires their
/// states' timeouts from one timer heap, executes their actions through an executor, and traces
/// every transition.
///
/// Leaving a state cancels its timers: each timer carries the machine's epoch (its count of state
/// entries) from when it was armed, and a timer whose epoch is no longer current is recognised
/// when it comes due and dropped unfired. Timers due within ``coalescingWindow`` of each other
/// fire in one wake-up, so an idle agent with many peers wakes rarely.
public final class Scheduler<Executor: ActionExecutor>: TimerSource {
    public typealias Spec = Executor.Spec

    public let chart: Chart<Spec>
    public let clock: any TimeSource
    public let executor: Executor
    /// Timers due up to this long after the earliest one fire together with it.
    public var coalescingWindow: Nanoseconds
    /// Receives one `transition` line per transition: external ones at info, internal ones at debug.
    public var logger: Logger
    /// Called for every transition, after its actions ran (status, tests).
    public var onTransition: ((TransitionRecord<Spec>) -> Void)?
    public var statistics: Statistics { counters }
    @usableFromInline var counters = Statistics()

    /// Counters of what the scheduler did.
    public struct Statistics: Sendable, Equatable {
        public var transitions = 0
        public var ignoredEvents = 0
        public var timersFired = 0
        /// Timers that came due after their state was left, dropped unfired.
        public var staleTimers = 0
        /// Calls to ``fireDueTimers()`` that found at least one timer due.
        public var wakeups = 0
    }

    /// One slot per machine; a removed machine's slot is reused by the next one added, under the
    /// next generation, so the tables are as large as the most machines alive at once.
    @usableFromInline var machines: [Machine<Spec>?] = []
    @usableFromInline var generations: [UInt32] = []
    @usableFromInline var names: [String] = []
    @usableFromInline var enteredAt: [Nanoseconds] = []
    @usableFromInline var freeSlots: [Int32] = []
    @usableFromInline var timers = MinHeap<TimerEntry>()
    @usableFromInline var sequence: UInt64 = 0
    @usableFromInline var queue: [(machine: MachineID, event: Spec.Event)] = []
    @usableFromInline var queueHead = 0
    @usableFromInline var draining = false

    public init(
        chart: Chart<Spec>, clock: any TimeSource, executor: Executor,
        coalescingWindow: Duration = .milliseconds(10), logger: Logger = Logger(label: "lanrage.scheduler")
    ) {
        self.chart = chart
        self.clock = clock
        self.executor = executor
        self.coalescingWindow = coalescingWindow.nanoseconds
        self.logger = logger
    }

    // MARK: Machines

    /// Adds and starts a machine: `prepare` gets its ID first (the executor stores what the
    /// machine's actions need), then its initial state's entry actions run and its timers are armed.
    @discardableResult
    public func add(name: String, context: Spec.Context, prepare: (MachineID) -> Void = { _ in }) -> MachineID {
        var machine = Machine(chart: chart, context: context)
        let actions = machine.start()
        let id: MachineID
        if let slot = freeSlots.popLast() {
            let index = Int(slot)
            id = MachineID(slot, generation: generations[index])
            machines[index] = machine
            names[index] = name
            enteredAt[index] = clock.now
        } else {
            id = MachineID(Int32(machines.count))
            machines.append(machine)
            generations.append(0)
            names.append(name)
            enteredAt.append(clock.now)
        }
        prepare(id)
        armTimeouts(of: id)
        for action in actions { executor.execute(action, for: id) }
        drain()
        return id
    }

    /// Forgets a machine and frees its slot: its pending timers and events are dropped as they come up.
    public func remove(_ id: MachineID) {
        guard isCurrent(id) else { return }
        let index = Int(id.index)
        machines[index] = nil
        names[index] = ""
        generations[index] &+= 1
        freeSlots.append(id.index)
    }

    /// Whether `id` names a machine that is still there.
    @inlinable
    func isCurrent(_ id: MachineID) -> Bool {
        let index = Int(id.index)
        return machines.indices.contains(index) && generations[index] == id.generation && machines[index] != nil
    }

    /// The machine `id`, or `nil` once removed.
    @inlinable
    public func machine(_ id: MachineID) -> Machine<Spec>? {
        isCurrent(id) ? machines[Int(id.index)] : nil
    }

    /// Changes a machine's context in place (to store the data an event carries before posting it).
    @inlinable
    public func updateContext(of id: MachineID, _ update: (inout Spec.Context) -> Void) {
        guard isCurrent(id) else { return }
        update(&machines[Int(id.index)]!.context)
    }

    // MARK: Events

    /// Delivers `event` to machine `id`, after the events already queued (FIFO). When called from
    /// outside an executor callback, the queue is processed before returning.
    @inlinable
    public func post(_ event: Spec.Event, to id: MachineID) {
        queue.append((id, event))
        drain()
    }

    /// Delivers `event` to machine `id` after `delay`, whatever state it is in then.
    @inlinable
    public func post(_ event: Spec.Event, to id: MachineID, after delay: Duration) {
        push(TimerEntry(deadline: clock.now + delay.nanoseconds, sequence: 0, machine: id, epoch: 0,
                        timeout: -1, payload: Int32(event.rawValue)))
    }

    @inlinable
    func drain() {
        guard !draining else { return }
        draining = true
        defer { draining = false }
        while queueHead < queue.count {
            let (id, event) = queue[queueHead]
            queueHead += 1
            deliver(event, to: id)
        }
        queue.removeAll(keepingCapacity: true)
        queueHead = 0
    }

    @inlinable
    func deliver(_ event: Spec.Event, to id: MachineID) {
        let index = Int(id.index)
        guard isCurrent(id) else { return }
        guard let transition = machines[index]!.handle(event) else {
            counters.ignoredEvents += 1
            logger.trace("ignored", metadata: [MetadataKey.peer: "\(names[index])", MetadataKey.event: "\(event)",
                                               MetadataKey.state: "\(machines[index]!.state)"])
            return
        }
        counters.transitions += 1
        let now = clock.now
        let elapsed = now - enteredAt[index]
        if !transition.isInternal {
            enteredAt[index] = now
            armTimeouts(of: id)
        }
        trace(transition, of: id, elapsed: elapsed, at: now)
        for action in transition.actions { executor.execute(action, for: id) }
        if let onTransition {
            onTransition(TransitionRecord(time: now, machine: id, name: names[index], transition: transition, elapsed: elapsed))
        }
    }

    @inlinable
    func trace(_ transition: Transition<Spec>, of id: MachineID, elapsed: Nanoseconds, at now: Nanoseconds) {
        let level: Logger.Level = transition.isInternal ? .debug : .info
        guard logger.logLevel <= level else { return }
        log(TransitionRecord(time: now, machine: id, name: names[Int(id.index)], transition: transition, elapsed: elapsed),
            at: level)
    }

    /// Writes the one structured line of a transition; only reached when the level is enabled.
    @usableFromInline
    func log(_ record: TransitionRecord<Spec>, at level: Logger.Level) {
        logger.log(level: level, "transition", metadata: [
            MetadataKey.peer: "\(record.name)",
            MetadataKey.from: "\(record.transition.from)",
            MetadataKey.event: "\(record.transition.event)",
            MetadataKey.to: "\(record.transition.to)",
            MetadataKey.elapsed: "\(TransitionRecord<Spec>.milliseconds(record.elapsed))",
            MetadataKey.actions: "\(record.actionList)",
        ])
    }

    // MARK: Timers

    @inlinable
    func armTimeouts(of id: MachineID) {
        let machine = machines[Int(id.index)]!
        let now = clock.now
        for index in chart.timeoutIndices(of: machine.state) {
            let timeout = chart.timeouts[Int(index)]
            push(TimerEntry(
                deadline: now + timeout.delay.nanoseconds(in: machine.context), sequence: 0, machine: id,
                epoch: machine.epoch, timeout: index, payload: Int32(clamping: timeout.repeats)))
        }
    }

    @inlinable
    func push(_ entry: TimerEntry) {
        var entry = entry
        sequence &+= 1
        entry.sequence = sequence
        timers.insert(entry)
    }

    /// When the earliest armed timer is due, or `nil` when none is armed.
    @inlinable
    public var nextDeadline: Nanoseconds? { timers.min?.deadline }


    /// Fires every timer due by now (or within the coalescing window after the earliest due one),
    /// in deadline order, and processes the events they cause. Returns how many fired.
    @inlinable @discardableResult
    public func fireDueTimers() -> Int {
        let now = clock.now
        guard let first = timers.min, first.deadline <= now else { return 0 }
        counters.wakeups += 1
        let limit = max(now, first.deadline + coalescingWindow)
        var fired = 0
        while let deadline = timers.min?.deadline, deadline <= limit {
            let entry = timers.removeMin()
            let index = Int(entry.machine)
            let id = MachineID(entry.machine, generation: entry.generation)
            guard isCurrent(id) else { continue }
            if entry.timeout < 0 {
                queue.append((id, Spec.Event(rawValue: Int(entry.payload))!))
            } else {
                guard entry.epoch == machines[index]!.epoch else {
                    counters.staleTimers += 1
                    continue
                }
                let timeout = chart.timeouts[Int(entry.timeout)]
                if entry.payload > 1 {
                    var next = entry
                    next.deadline += timeout.delay.nanoseconds(in: machines[index]!.context)
                    if entry.payload != Int32.max { next.payload -= 1 }
                    push(next)
                }
                queue.append((id, timeout.event))
            }
            fired += 1
            counters.timersFired += 1
            drain()
        }
        return fired
    }

    /// For virtual time: moves `clock` from timer to timer, firing each, until no timer is due
    /// by `deadline`; then sets the clock to `deadline`. Returns how many timers fired.
    @discardableResult
    public func runVirtual(_ clock: VirtualClock, until deadline: Nanoseconds) -> Int {
        precondition(clock === self.clock, "runVirtual needs the scheduler's own virtual clock")
        var fired = 0
        while let next = nextDeadline, next <= deadline {
            if next > clock.now { clock.now = next }
            fired += fireDueTimers()
        }
        clock.now = max(clock.now, deadline)
        return fired
    }
}

/// The keys of the scheduler's log metadata, defined once so every line greps the same way.
public enum MetadataKey {
    public static let peer = "peer"
    public static let from = "from"
    public static let event = "event"
    public static let to = "to"
    public static let state = "state"
    public static let elapsed = "elapsed_ms"
    public static let actions = "actions"
}
