import Control
import ChartTestSupport
import EventLoop
import StateChart
import Testing
import Time

/// The registration chart in virtual time, with no sockets: retries, backoff, heartbeats,
/// reconnection when the server goes silent or forgets the member.
@Suite struct RegistrationChartTests {
    final class Harness {
        let clock = VirtualClock()
        let executor = RecordingExecutor<RegistrationChart>()
        let scheduler: Scheduler<RecordingExecutor<RegistrationChart>>
        let id: MachineID

        init() {
            scheduler = Scheduler(chart: RegistrationChart.chart, clock: clock, executor: executor, coalescingWindow: .zero)
            id = scheduler.add(name: "member", context: RegistrationContext())
        }

        var state: RegistrationState { scheduler.machine(id)!.state }
        func post(_ event: RegistrationEvent) { scheduler.post(event, to: id) }
        func wait(_ duration: Duration) { scheduler.runVirtual(clock, until: clock.now + duration.nanoseconds) }
        func take() -> [RegistrationAction] {
            defer { executor.reset() }
            return executor.executed.map(\.action)
        }
    }

    @Test func theChartIsValidAndDrawn() {
        let dot = RegistrationChart.chart.dot()
        for state in ["registering", "registered", "backingOff"] { #expect(dot.contains(state)) }
        #expect(dot.contains("1s·2ⁿ ≤ 60s"))
    }

    @Test func registerIsResentThreeTimesThenBacksOffExponentially() {
        let h = Harness()
        h.post(.start)
        #expect(h.state == .registering && h.take() == [.sendRegister])
        h.wait(.milliseconds(2_999))
        #expect(h.take() == [.sendRegister, .sendRegister], "two resends, one second apart")
        h.wait(.milliseconds(1))
        #expect(h.state == .backingOff && h.take() == [.reportDisconnected])
        // Backoff: 2 s after the first failed round, then 4 s, 8 s …
        var gaps: [Duration] = []
        for _ in 0..<3 {
            let left = h.clock.now
            while h.state == .backingOff { h.wait(.milliseconds(100)) }
            gaps.append(.nanoseconds(h.clock.now - left))
            h.wait(.seconds(3))   // three unanswered attempts
            _ = h.take()
        }
        #expect(gaps == [.seconds(2), .seconds(4), .seconds(8)])
    }

    @Test func heartbeatsKeepItRegisteredAndThreeMissedReconnect() {
        let h = Harness()
        h.post(.start)
        h.scheduler.updateContext(of: h.id) { $0.heartbeat = .seconds(10) }
        h.post(.registeredAck)
        #expect(h.state == .registered)
        _ = h.take()
        for _ in 0..<5 {
            h.wait(.seconds(10))
            #expect(h.take() == [.sendHeartbeat])
            h.post(.heartbeatAcked)
        }
        #expect(h.state == .registered)
        // The server goes silent: once a heartbeat is found unanswered (at the next one's due
        // moment), the next ones go 2 s apart, not 10 s; three unanswered, the fourth due moment
        // reconnects — 24 s after the last answer, before the server's 30 s.
        h.wait(.seconds(10))
        #expect(h.take() == [.sendHeartbeat])
        h.wait(.seconds(10))
        #expect(h.take() == [.sendHeartbeat])
        h.wait(.seconds(2))
        #expect(h.take() == [.sendHeartbeat])
        #expect(h.state == .registered)
        h.wait(.seconds(2))
        #expect(h.state == .registering && h.take() == [.sendRegister])
        // A success resets the failure count: the next backoff starts at 1 s again.
        h.post(.registeredAck)
        #expect(h.scheduler.machine(h.id)!.context.failures == 0)
    }

    @Test func aResyncRegistersAgainAndStopSaysGoodbye() {
        let h = Harness()
        h.post(.start)
        h.post(.registeredAck)
        _ = h.take()
        h.post(.resync)
        #expect(h.state == .registering && h.take() == [.sendRegister])
        h.post(.registeredAck)
        _ = h.take()
        h.post(.stop)
        #expect(h.state == .stopped && h.take() == [.sendLeave])
    }

    /// An update (new candidates, a missed push) is a register sent while registered: it goes at
    /// once, again in place of each heartbeat while unanswered, and the member never stops being
    /// registered; the answer brings the heartbeats back.
    @Test func anUpdateIsResentInPlaceOfHeartbeatsUntilAnswered() {
        let h = Harness()
        h.post(.start)
        h.scheduler.updateContext(of: h.id) { $0.heartbeat = .seconds(10) }
        h.post(.registeredAck)
        _ = h.take()
        h.post(.update)
        #expect(h.state == .registered && h.take() == [.sendRegister])
        h.wait(.seconds(20))
        #expect(h.state == .registered && h.take() == [.sendRegister, .sendRegister], "unanswered: resent with each heartbeat")
        h.post(.registeredAck)
        #expect(h.take() == [.reportUpdated])
        h.wait(.seconds(10))
        #expect(h.take() == [.sendHeartbeat])
        // Unanswered updates count as missed heartbeats: a silent server is noticed all the same.
        h.post(.update)
        h.wait(.seconds(30))
        #expect(h.state == .registering)
    }
}
