import Testing
@testable import StateChart

@Suite struct MachineTests {
    @Test func startEntersTheInitialStateWithItsEntryActions() throws {
        var machine = Machine(chart: try Turnstile.chart(), context: .init())
        #expect(machine.start() == [.enterLocked])
        #expect(machine.state == .locked)
        #expect(machine.context.entries == 1)
        #expect(machine.epoch == 1)
    }

    @Test func externalTransitionRunsExitRowAndEntryActionsInOrder() throws {
        var machine = Machine(chart: try Turnstile.chart(), context: .init())
        _ = machine.start()
        let unlockStep = machine.handle(.coin)
        let unlock = try #require(unlockStep)
        #expect(unlock.from == .locked && unlock.to == .unlocked && !unlock.isInternal)
        #expect(unlock.actions == [.exitLocked, .unlock])
        #expect(machine.context.coins == 1)
        let lockStep = machine.handle(.push)
        let lock = try #require(lockStep)
        #expect(lock.actions == [.lock, .enterLocked])
        #expect(machine.state == .locked)
        #expect(machine.context.entries == 2)
        #expect(machine.epoch == 3)
    }

    @Test func internalTransitionKeepsStateAndEpoch() throws {
        var machine = Machine(chart: try Turnstile.chart(), context: .init())
        _ = machine.start()
        let beepStep = machine.handle(.push)
        let beep = try #require(beepStep)
        #expect(beep.isInternal && beep.to == .locked && beep.actions == [.beep])
        #expect(machine.epoch == 1)
        #expect(machine.context.entries == 1)
    }

    @Test func guardsAreTriedInTableOrderWithTheUnguardedRowLast() throws {
        var machine = Machine(chart: try Turnstile.chart(), context: .init())
        _ = machine.start()
        _ = machine.handle(.coin)
        machine.context.coins = 0
        let selfLoopStep = machine.handle(.push)
        let selfLoop = try #require(selfLoopStep)
        #expect(selfLoop.from == .unlocked && selfLoop.to == .unlocked && !selfLoop.isInternal)
        #expect(machine.epoch == 3, "an external self-transition re-enters the state")
        machine.context.coins = 1
        #expect(machine.handle(.push)?.to == .locked)
    }

    @Test func anEventWithoutARowIsIgnored() throws {
        var machine = Machine(chart: try Turnstile.chart(), context: .init())
        _ = machine.start()
        #expect(machine.handle(.idle) == nil)
        #expect(machine.state == .locked && machine.epoch == 1)
    }

    @Test func finalStateIsFinished() throws {
        var machine = Machine(chart: try Turnstile.chart(), context: .init())
        _ = machine.start()
        #expect(!machine.isFinished)
        #expect(machine.handle(.kick)?.actions == [.exitLocked, .alarm])
        #expect(machine.isFinished)
        #expect(machine.handle(.coin) == nil)
    }
}

extension Transition: Equatable where Spec.Action: Equatable {
    public static func == (lhs: Transition, rhs: Transition) -> Bool {
        lhs.from == rhs.from && lhs.event == rhs.event && lhs.to == rhs.to && lhs.isInternal == rhs.isInternal
            && lhs.actions == rhs.actions
    }
}
