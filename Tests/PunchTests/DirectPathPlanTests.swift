import Net
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

    /// Behind one public address (one router, most likely) every pair punches: the LAN addresses
    /// are candidates and no NAT stands between the two; no port is predicted.
    @Test(arguments: types, types)
    func membersBehindOnePublicAddressPunch(local: NATType, remote: NATType) {
        #expect(DirectPathPlan(local: local, remote: remote, withoutNAT: true) == .punch)
        #expect(PortPredictionRole(local: local, remote: remote, observed: IPAddress("203.0.113.7")!,
                                   reachable: Endpoint("203.0.113.7:40000")!, withoutNAT: true) == .none)
    }

    /// Port-restricted ↔ symmetric only: the port-restricted side sprays at the address the control
    /// server saw the peer at, the symmetric side fans toward the peer's reflexive endpoint when
    /// that is at the same address — never at an address only the peer claims.
    @Test(arguments: types, types)
    func portPredictionRoles(local: NATType, remote: NATType) {
        let observed = IPAddress("203.0.113.7")!, reachable = Endpoint("203.0.113.7:40000")!
        let role = PortPredictionRole(local: local, remote: remote, observed: observed, reachable: reachable)
        switch (local, remote) {
        case (.portRestrictedCone, .symmetric): #expect(role == .spray(at: observed))
        case (.symmetric, .portRestrictedCone): #expect(role == .fan(toward: reachable))
        default: #expect(role == .none)
        }
        let claimedElsewhere = PortPredictionRole(local: local, remote: remote, observed: observed, reachable: Endpoint("192.0.2.9:40000")!)
        #expect(claimedElsewhere == (local == .portRestrictedCone && remote == .symmetric ? .spray(at: observed) : .none))
        #expect(PortPredictionRole(local: local, remote: remote, observed: nil, reachable: reachable) == .none)
    }
}
