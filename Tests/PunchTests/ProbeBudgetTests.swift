import LabSupport
import Net
import Testing
@testable import Punch
import Time

@Suite struct ProbeBudgetTests {
    static let observed = IPAddress.v4(IPv4Address(198, 51, 100, 20))
    static let third = IPAddress.v4(IPv4Address(203, 0, 113, 99))

    @Test func anUnansweredAddressGetsItsAllowanceAMinute() {
        var budget = ProbeBudget(observed: Self.observed, now: 0)
        let sent = (0..<100).filter { _ in budget.allow(Self.third, now: 1) }.count
        #expect(sent == ProbeBudget.perAddress)
        #expect(budget.withheld == 100 - ProbeBudget.perAddress)
        // The next minute, again.
        let nextMinute = budget.allow(Self.third, now: ProbeBudget.window + 1)
        #expect(nextMinute)
    }

    @Test func theObservedAddressGetsTheFanAndSprayAllowance() {
        var budget = ProbeBudget(observed: Self.observed, now: 0)
        let sent = (0..<5000).filter { _ in budget.allow(Self.observed, now: 1) }.count
        #expect(sent == ProbeBudget.observedAllowance)
    }

    @Test func onlySoManyUnansweredAddressesAndAnsweredOnesAreFree() {
        var budget = ProbeBudget(observed: nil, now: 0)
        let addresses = (1...40).map { IPAddress.v4(IPv4Address(203, 0, 113, UInt8($0))) }
        let punched = addresses.filter { budget.allow($0, now: 1) }
        #expect(punched.count == ProbeBudget.addressLimit)
        budget.verify(addresses[0])
        let answered = (0..<1000).filter { _ in budget.allow(addresses[0], now: 2) }.count
        #expect(answered == 1000, "it answered: no limit")
    }
}

/// The driver on loopback: a peer whose record lists a third party's endpoint among its candidates
/// (a reflection attempt) gets that address punched at most the budget's allowance a minute, however
/// many bursts run; the real candidate, once it answered, without limit.
@Suite struct PunchDriverBudgetTests {
    @Test func thirdPartyCandidatesAreBounded() throws {
        let alice = Member(), bob = Member()
        let victim = try UDPSocket(binding: Endpoint("127.0.0.2:0")!)
        let driver = PunchDriver<Int, UDPSocket>(socket: try UDPSocket(binding: Endpoint("127.0.0.1:0")!))
        driver.start(1, PunchSession(key: alice.pairKey(with: bob), session: 1, candidates: [victim.local]),
                     observed: IPAddress.v4(IPv4Address(127, 0, 0, 1)))
        for _ in 0..<100 { driver.burst(1) }
        var received = 0
        let deadline = MonotonicTime.now() + .milliseconds(500)
        while MonotonicTime.now() < deadline {
            _ = try Readiness.readable([victim.descriptor], timeout: .milliseconds(50))
            while try victim.receive() != nil { received += 1 }
        }
        #expect(received == ProbeBudget.perAddress)
        #expect(driver.withheld(1) == 100 - ProbeBudget.perAddress)
    }

    /// Guesses share one allowance over all peers, refilled over a minute: the first peer's spray
    /// goes whole, the next ones get what is left, and time brings the allowance back.
    @Test func guessesShareOnePerMinuteAllowance() throws {
        let alice = Member(), bob = Member(), carol = Member()
        let clock = VirtualClock()
        let driver = PunchDriver<Int, UDPSocket>(socket: try UDPSocket(binding: Endpoint("127.0.0.1:0")!), clock: clock)
        let observed = IPAddress.v4(IPv4Address(127, 0, 0, 3))
        driver.start(1, PunchSession(key: alice.pairKey(with: bob), session: 1, candidates: []), observed: observed)
        driver.start(2, PunchSession(key: alice.pairKey(with: carol), session: 1, candidates: []), observed: observed)
        let guesses = (0..<1024).map { Endpoint(observed, UInt16(20000 + $0)) }
        let limit = PunchDriver<Int, UDPSocket>.guessesPerMinute
        #expect(driver.probe(1, guesses) == 1024)
        #expect(driver.probe(2, guesses) == limit - 1024)
        #expect(driver.probe(2, guesses) == 0, "nothing left")
        clock.advance(by: .seconds(15))
        #expect(driver.probe(1, guesses) == limit / 4, "a quarter of a minute: a quarter of the allowance")
        clock.advance(by: .seconds(600))
        #expect(driver.probe(1, guesses) == 1024, "never more than one minute's worth saved up")
        #expect(driver.guessesAvailable == limit - 1024)
    }
}
