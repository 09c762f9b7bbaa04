import ChartTestSupport
import EventLoop
import Peer
import StateChart
import Testing
import Time

/// One peer machine on a scheduler in virtual time, with every action and fired row recorded.
final class PeerHarness {
    let clock = VirtualClock()
    let executor = RecordingExecutor<PeerChart>()
    let scheduler: Scheduler<RecordingExecutor<PeerChart>>
    let id: MachineID
    /// Rows of the chart that fired, by index.
    private(set) var firedRows = Set<Int>()

    init(timings: PeerTimings = PeerTimings(), chart: Chart<PeerChart>? = nil) {
        scheduler = Scheduler(chart: chart ?? PeerChart.chart(timings), clock: clock, executor: executor, coalescingWindow: .zero)
        var rows = Set<Int>()
        scheduler.onTransition = { rows.insert($0.transition.row) }
        id = scheduler.add(name: "peer", context: PeerContext(timings: timings))
        firedRowsSource = { rows }
    }

    private var firedRowsSource: () -> Set<Int> = { [] }
    var rowsFired: Set<Int> { firedRowsSource() }

    var state: PeerState { scheduler.machine(id)!.state }
    var context: PeerContext { scheduler.machine(id)!.context }

    /// Actions executed since the last call.
    func takeActions() -> [PeerAction] {
        defer { executor.reset() }
        return executor.executed.map(\.action)
    }

    /// Feeds an input the way the agent will: data into the context, then the event.
    func send(_ input: PeerInput) {
        scheduler.updateContext(of: id) { input.apply(to: &$0) }
        scheduler.post(input.event, to: id)
    }

    /// Lets `duration` of virtual time pass, firing timers on the way.
    func wait(_ duration: Duration) {
        scheduler.runVirtual(clock, until: clock.now + duration.nanoseconds)
    }

    /// Drives the machine from the start to `state` along the shortest ordinary path.
    func reach(_ target: PeerState) {
        precondition(state == .discovering)
        _ = takeActions()
        if target == .discovering { return }
        send(.candidatesKnown)
        if target == .detecting { _ = takeActions(); return }
        if target == .relaying {
            send(.natKnown(directPossible: false))
            _ = takeActions(); return
        }
        send(.natKnown(directPossible: true))
        if target == .punching { _ = takeActions(); return }
        send(.punchAcked)
        if target == .direct { _ = takeActions(); return }
        wait(.seconds(1))
        send(.wireGuardRead(handshakeAge: .milliseconds(200), pathConfirmed: true))
        precondition(target == .keepalive && state == .keepalive)
        _ = takeActions()
    }

    /// Drives to keepalive over a relay.
    func reachRelayedKeepalive() {
        reach(.relaying)
        send(.relayReady)
        wait(.seconds(1))
        send(.wireGuardRead(handshakeAge: .milliseconds(300), pathConfirmed: true))
        precondition(state == .keepalive && context.path == .relayed)
        _ = takeActions()
    }
}
