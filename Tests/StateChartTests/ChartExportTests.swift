import Testing
@testable import StateChart

@Suite struct ChartExportTests {
    @Test func dotHasEveryStateAndEdgeWithTimeoutLabels() throws {
        let dot = try Turnstile.chart().dot()
        #expect(dot.hasPrefix("digraph turnstile {\n"))
        #expect(dot.contains("  __start -> locked;"))
        #expect(dot.contains(#"  unlocked -> locked [label="idle (after 5s)\n/ lock"];"#))
        #expect(dot.contains(#"  unlocked -> locked [label="push [paid]\n/ lock"];"#))
        #expect(dot.contains(#"  locked -> locked [label="push\n/ beep", style=dashed];"#))
        #expect(dot.contains(#"  broken [label="broken", peripheries=2];"#))
        #expect(dot.contains(#"  locked [label="locked\nentry / enterLocked\nexit / exitLocked"];"#))
        #expect(dot.components(separatedBy: " -> ").count - 1 == 8, "one edge per row plus the start arrow")
    }

    @Test func jsonListsStatesTimeoutsAndRows() throws {
        let json = try Turnstile.chart().json().rendered()
        #expect(json.hasPrefix(#"{"name":"turnstile","initial":"locked","states":["#))
        #expect(json.contains(#"{"name":"unlocked","final":false,"entry":[],"exit":[],"timeouts":[{"delay":"5s","repeats":1,"event":"idle"}]}"#))
        #expect(json.contains(#"{"from":"unlocked","event":"push","guard":"paid","to":"locked","internal":false,"actions":["lock"]}"#))
    }

    @Test(arguments: [
        (Duration.seconds(2), "2s"), (.milliseconds(100), "100ms"), (.milliseconds(2400), "2.4s"),
        (.seconds(180), "3m"), (.seconds(90), "90s"), (.seconds(3600), "1h"),
        (.milliseconds(1250), "1.25s"), (.microseconds(5), "5µs"), (.nanoseconds(7), "7ns"),
    ])
    func delaysReadShortAndExact(duration: Duration, text: String) {
        #expect(Delay<Int>.format(duration) == text)
    }
}

import Foundation
