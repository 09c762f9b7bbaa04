import Foundation
import LabSupport
import Testing

/// `make lab-bench`: for every pair of NAT types, the median time from the start of the punch to
/// both endpoints pinned, over several cold runs (NAT state flushed in between), and how often
/// port prediction wins for port-restricted ↔ symmetric. Not part of `make test`.
@Suite(.enabled(if: Lab.isAvailable && ProcessInfo.processInfo.environment["LANRAGE_LAB_BENCH"] == "1",
                "a benchmark: run with make lab-bench"))
struct PunchMatrixBenchmark {
    static let runs = Int(ProcessInfo.processInfo.environment["LANRAGE_LAB_RUNS"] ?? "") ?? 7

    @Test(arguments: PunchMatrixLabTests.pairs)
    func timeToPinnedEndpoint(_ a: NATBehaviour, _ b: NATBehaviour) throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let cell = try PunchCell(lab: lab, a: a, b: b)
        var times: [Double] = []
        var direct = 0
        var plan = ""
        let expectation = PunchMatrixLabTests.expectation(a, b)
        for _ in 0..<Self.runs {
            try cell.flushNATState()
            let result = try cell.run()
            plan = result.plan.rawValue
            // What the matrix test asserts for one run holds in every run timed here.
            switch expectation {
            case "relay": #expect(result.plan == .relay)
            case "direct": #expect(result.plan == .punch && result.direct, "\(a) ↔ \(b) must connect directly")
            default: #expect(result.plan == .punchWithPortPrediction && result.elapsed < .seconds(6))
            }
            if result.direct {
                direct += 1
                times.append(Double(result.elapsed.components.attoseconds) / 1e15 + Double(result.elapsed.components.seconds) * 1000)
            }
        }
        times.sort()
        let median = times.isEmpty ? "—" : String(format: "%.2f ms", times[times.count / 2])
        print("LAB-BENCH punch \(a) ↔ \(b) | plan: \(plan) | direct \(direct)/\(Self.runs) | median to pinned: \(median)")
    }
}
