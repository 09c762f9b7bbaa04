import Net
import Punch
import STUN
import Time

/// What a ``PunchScenario`` run did, and the properties every run must have.
public struct PunchOutcome: Sendable {
    public var scenario: PunchScenario
    /// Each side's detected NAT type; `nil` when its detection failed.
    public var detected: [NATType?] = [nil, nil]
    public var plan = DirectPathPlan.relay
    public var direct = false
    /// The round that went direct (1-based).
    public var rounds = 0
    /// From the first round's start to both sides pinned, in virtual time.
    public var timeToDirect: Nanoseconds?
    public var pinned: [Endpoint?] = [nil, nil]
    public var throughFan = false
    /// Each site's outermost public address.
    public var publicAddresses: [IPAddress] = []
    /// Each member's own address.
    public var hostAddresses: [IPAddress] = []
    /// Datagrams the routers dropped for a full conntrack table.
    public var tableFull = 0
    public var datagrams = (delivered: 0, lost: 0, filtered: 0, unroutable: 0)
    public var trace: [String] = []

    init(scenario: PunchScenario) {
        self.scenario = scenario
    }

    /// What the pair's punching came to.
    mutating func record(_ pair: PairPunch) {
        plan = pair.plan
        publicAddresses = pair.observed
        guard pair.direct else { return }
        direct = true
        rounds = pair.round
        timeToDirect = pair.timeToDirect
        pinned = [pair.pin(0)?.endpoint, pair.pin(1)?.endpoint]
        throughFan = pair.pin(0)?.throughFan == true || pair.pin(1)?.throughFan == true
    }

    /// The properties this run broke, each as a sentence; empty when it has them all:
    /// - each detection that finished names the NAT the member is behind; a lossy network may
    ///   only make a NAT look stricter than it is, never more open (a lost answer to a
    ///   CHANGE-REQUEST looks like a filter), and a clean one names it exactly;
    /// - the pair ends direct wherever the matrix says it can: in the first round (ten bursts
    ///   each way; at 10 % loss all of them fail about once in 10⁷ rounds), or for port
    ///   prediction, whose guesses hit in about 98 % of attempts, and a run whose router forgets its
    ///   mappings mid-round within the scenario's rounds (four for a pair, eight in a party); two members on one LAN are direct
    ///   whatever their NAT;
    ///   symmetric ↔ symmetric goes to the relay without punching once both are detected (an
    ///   unknown type is punched at, as the agent does, and must fail);
    /// - a side pins the other's public address, or on one LAN its LAN address (or, with hairpin
    ///   NAT, the shared public one);
    /// - no router's conntrack table fills (16,384 flows, OpenWrt's default): what the agents send,
    ///   fan and spray included, must not lock a router's other traffic out.
    public var violations: [String] {
        var found: [String] = []
        for (index, site) in scenario.sites.enumerated() {
            guard let type = detected[index] else { continue }
            let expected = site.effective
            if scenario.conditions.loss == 0 && scenario.conditions.duplication == 0 {
                if type != expected { found.append("side \(index) detected \(type), is \(expected)") }
            } else if Self.rank(type) < Self.rank(expected) {
                found.append("side \(index) detected \(type), more open than \(expected)")
            }
        }
        let exact = detected.enumerated().allSatisfy { $0.element == scenario.sites[$0.offset].effective }
        if scenario.directExpected, exact, !direct {
            found.append("no direct path after \(scenario.rounds) rounds (plan \(plan))")
        } else if scenario.directExpected, exact, rounds > 1, plan != .punchWithPortPrediction, scenario.flush == nil {
            found.append("direct only in round \(rounds)")
        }
        if !scenario.directExpected, direct {
            found.append("symmetric ↔ symmetric went direct")
        } else if !scenario.directExpected, exact, plan != .relay {
            found.append("symmetric ↔ symmetric detected, but plan \(plan)")
        }
        for (index, endpoint) in pinned.enumerated() {
            guard let endpoint, publicAddresses.count == 2, hostAddresses.count == 2 else { continue }
            let peer = 1 - index
            let allowed = scenario.sameSite ? [hostAddresses[peer]] + (scenario.hairpin ? [publicAddresses[peer]] : [])
                                            : [publicAddresses[peer]]
            if !allowed.contains(endpoint.address) {
                found.append("side \(index) pinned \(endpoint), not the peer at \(allowed.map { "\($0)" }.joined(separator: " or "))")
            }
        }
        if tableFull > 0 { found.append("\(tableFull) datagrams dropped for a full conntrack table") }
        return found
    }

    /// How open a type is: open 0 … symmetric 4; unknown counts as strictest.
    static func rank(_ type: NATType) -> Int {
        PunchScenario.Site.strictness.firstIndex(of: type) ?? PunchScenario.Site.strictness.count
    }

    /// One line: the cell, what was detected, the plan, and the path.
    public var summary: String {
        let types = detected.map { $0.map { "\($0)" } ?? "failed" }.joined(separator: " / ")
        let path = direct ? "direct in round \(rounds) after \((timeToDirect ?? 0) / 1_000_000) ms\(throughFan ? " (fan)" : "")" : "relay"
        return "\(scenario) → detected \(types), plan \(plan.rawValue), \(path)"
    }
}
