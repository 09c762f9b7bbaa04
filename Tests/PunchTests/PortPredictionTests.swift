import Testing
@testable import Punch

@Suite struct PortPredictionTests {
    var generator = SystemRandomNumberGenerator()

    @Test mutating func consecutiveMappingsPredictTheNextOnes() {
        let prediction = PortPrediction(observed: [40_001, 40_002], budget: 5, using: &generator)
        #expect(prediction.method == .sequential)
        #expect(prediction.ports == [40_003, 40_004, 40_005, 40_006, 40_007])
        let stepped = PortPrediction(observed: [50_000, 50_004, 50_008], budget: 3, using: &generator)
        #expect(stepped.ports == [50_012, 50_016, 50_020])
        let down = PortPrediction(observed: [3000, 2999], budget: 2, using: &generator)
        #expect(down.ports == [2998, 2997])
    }

    @Test mutating func sequencesWrapAroundTheRange() {
        let prediction = PortPrediction(observed: [65_534, 65_535], budget: 3, range: 1024...65535, using: &generator)
        #expect(prediction.ports == [1024, 1025, 1026])
    }

    @Test mutating func irregularMappingsAreSprayedAtRandomWithinBudgetAndRange() {
        let prediction = PortPrediction(observed: [40_001, 52_777, 33_210], budget: 1000, range: 20_000...30_000, using: &generator)
        #expect(prediction.method == .random)
        #expect(prediction.ports.count == 1000)
        #expect(Set(prediction.ports).count == 1000)
        #expect(prediction.ports.allSatisfy { (20_000...30_000).contains($0) })
        #expect(PortPrediction(observed: [7], budget: 10, using: &generator).method == .random, "one observation shows no pattern")
        #expect(PortPrediction(observed: [100, 200], budget: 10, using: &generator).method == .random, "a step of 100 is no sequence")
    }

    @Test mutating func theBudgetIsBoundedByTheRange() {
        #expect(PortPrediction(observed: [], budget: 50, range: 60_000...60_009, using: &generator).ports.count == 10)
        #expect(PortPrediction(observed: [1, 2], budget: -5, using: &generator).ports.isEmpty)
    }

    @Test func randomHitChance() {
        #expect(PortPrediction.randomHitChance(probes: 256, rangeSize: 65_536) == 256.0 / 65_536)
        #expect(PortPrediction.randomHitChance(probes: 10, rangeSize: 5) == 1)
    }
}
