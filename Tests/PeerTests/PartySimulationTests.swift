import Testing

/// 10,000 peers through full lifecycles in virtual time: deterministic, and every peer ends closed.
@Suite struct PartySimulationTests {
    @Test func tenThousandPeersAreDeterministicForASeed() {
        let first = simulateParty(peers: 10_000, seed: 42, minutes: 5)
        let again = simulateParty(peers: 10_000, seed: 42, minutes: 5)
        #expect(first.fingerprint == again.fingerprint, "same seed, same trace")
        #expect(first.transitions == again.transitions)
        #expect(first.closed == 10_000, "every peer left and its machine is closed")
        #expect(first.transitions > 10_000 * 10, "full lifecycles, not just a start")
        #expect(first.reachedKeepalive > 9_000, "almost every peer got a working tunnel before leaving")
    }

    @Test func anotherSeedGivesAnotherTrace() {
        let one = simulateParty(peers: 500, seed: 42, minutes: 5)
        let other = simulateParty(peers: 500, seed: 43, minutes: 5)
        #expect(one.fingerprint != other.fingerprint)
    }
}
