import Output
import Testing
@testable import Output

@Suite struct JSONTests {
    @Test func rendersCompactAndKeepsKeyOrder() {
        let document = JSON.object([
            ("z", .int(1)), ("a", .array([.bool(true), .null, .double(1.5)])), ("s", .string("a\"b\\c\n\u{01}")),
        ])
        #expect(document.rendered() == #"{"z":1,"a":[true,null,1.5],"s":"a\"b\\c\n\u0001"}"#)
    }

    @Test func rendersPretty() {
        let document = JSON.object([("a", .array([.int(1)])), ("b", .object([]))])
        #expect(document.rendered(pretty: true) == "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}")
    }

    @Test func nonFiniteNumbersBecomeNull() {
        #expect(JSON.array([.double(.infinity), .double(.nan)]).rendered() == "[null,null]")
    }

    @Test func logfmtQuotesOnlyWhatNeedsIt() {
        let line = Logger.line(
            time: "T", level: .info, label: "lanrage", message: "transition",
            fields: [("peer", "p1"), ("note", "two words"), ("empty", "")], format: .logfmt)
        #expect(line == "time=T level=info logger=lanrage msg=transition peer=p1 note=\"two words\" empty=\"\"\n")
    }

    @Test func jsonLinesAreOneObjectPerLine() {
        let line = Logger.line(
            time: "T", level: .debug, label: "x", message: "m", fields: [("k", "v")], format: .json)
        #expect(line == #"{"time":"T","level":"debug","logger":"x","msg":"m","k":"v"}"# + "\n")
    }

    @Test func handlerWritesMetadataSorted() {
        let lines = LockedLines()
        var logger = Logger(label: "t", output: LogOutput(level: .info, format: .logfmt, sink: lines.append))
        logger[metadataKey: "z"] = "last"
        logger.info("hello", metadata: ["a": "first"])
        logger.debug("filtered out")
        let captured = lines.all
        #expect(captured.count == 1)
        #expect(captured[0].hasSuffix("msg=hello a=first z=last\n"))
    }
}

/// Collects log lines from a handler for inspection.
final class LockedLines: @unchecked Sendable {
    private var lines: [String] = []
    func append(_ line: String) { lines.append(line) }
    var all: [String] { lines }
}
