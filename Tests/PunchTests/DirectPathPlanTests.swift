import STUN
import Testing
@testable import Punch

@Suite struct DirectPathPlanTests {
    static let types: [NATType] = [.open, .fullCone, .restrictedCone, .portRestrictedCone, .symmetric, .unknown]

    @Test(arguments: types, types)
    func theTableIsSymmetricAndMatchesTheRules(local: NATType, remote: NATType) {
        let plan = DirectPathPlan(local: local, remote: remote)
        #expect(plan == DirectPathPlan(local: remote, remote: local))
        switch (local, remote) {
        case (.symmetric, .symmetric): #expect(plan == .relay && !plan.directPossible)
        case (.symmetric, .portRestrictedCone), (.portRestrictedCone, .symmetric): #expect(plan == .punchWithPortPrediction)
        default: #expect(plan == .punch && plan.directPossible)
        }
    }
}
