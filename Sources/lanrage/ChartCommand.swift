import Commands
import Control
import Output
import Peer
import StateChart
import STUN

/// `lanrage chart [NAME] [--format dot|json]`: prints one of LANrage's state charts.
enum ChartCommand {
    enum Format: String, CaseIterable, ArgumentValue { case dot, json }

    /// The charts LANrage runs, by name: each renders itself as DOT or JSON.
    static let catalog: [(name: String, render: @Sendable (Format) -> String)] = [
        ("peer", { render(PeerChart.chart(), $0) }),
        ("detection", { render(DetectionChart.chart, $0) }),
        ("registration", { render(RegistrationChart.chart, $0) }),
    ]

    static let command = Command(
        "chart",
        abstract: "Print a state chart as Graphviz DOT or JSON.",
        discussion: "Charts: \(catalog.map { $0.name }.joined(separator: ", ")). Render with: lanrage chart peer | dot -Tsvg > peer.svg",
        options: [.value("format", "FORMAT", help: "Output format: dot or json.", default: "dot")],
        arguments: [Argument("NAME", help: "The chart to print.", optional: true)]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let name = try invocation.argument("NAME", as: String.self) ?? "peer"
        let format = try invocation.value("format", as: Format.self) ?? .dot
        guard let entry = catalog.first(where: { $0.name == name }) else {
            throw invocation.usageError(
                "unknown chart '\(name)' (expected \(catalog.map { $0.name }.joined(separator: ", ")))")
        }
        StandardStreams.out(entry.render(format))
        return .success
    }

    static func render<Spec>(_ chart: Chart<Spec>, _ format: Format) -> String {
        switch format {
        case .dot: chart.dot()
        case .json: chart.json().rendered(pretty: true) + "\n"
        }
    }
}
