import Testing
@testable import WireGuard

/// A dump the kernel interrupts (its table changed meanwhile) is read again, a bounded number of times.
@Suite struct InterruptedDumpTests {
    @Test func anInterruptedDumpIsRetried() throws {
        var calls = 0
        let value = try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> Int in
            calls += 1
            if calls < 3 { throw WireGuardError(.interrupted, "list addresses of wg0: Dump inconsistency detected, interrupted") }
            return 42
        }
        #expect(value == 42 && calls == 3)
    }

    @Test func retriesAreBoundedAndOtherErrorsPassAtOnce() {
        var calls = 0
        #expect(throws: WireGuardError.self) {
            try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> Int in
                calls += 1
                throw WireGuardError(.interrupted, "again")
            }
        }
        #expect(calls == 5)
        calls = 0
        #expect(throws: WireGuardError.self) {
            try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> Int in
                calls += 1
                throw WireGuardError(.notFound, "no such device")
            }
        }
        #expect(calls == 1)
    }
}
