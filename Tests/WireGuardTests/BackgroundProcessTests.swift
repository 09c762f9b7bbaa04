import Foundation
import Testing
@testable import WireGuard

/// How wireguard-go is started: in a process group of its own, its output kept in a small sealed file that
/// a long-lived writer can neither grow nor die of.
struct BackgroundProcessTests {
    /// Polls (bounded) until the process has exited.
    static func exitStatus(of process: BackgroundProcess, within seconds: Double = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let status = process.exitStatus() { return status }
            usleep(2_000)
        }
        return nil
    }

    @Test func reportsTheExitStatusAndWhatItPrinted() throws {
        let process = try BackgroundProcess(["/bin/sh", "-c", "echo started; echo \"ERROR: $GREETING\" >&2; exit 3"],
                                            environment: ["GREETING=no TUN device"])
        #expect(Self.exitStatus(of: process) == 3)
        #expect(process.printed() == "started\nERROR: no TUN device\n")
    }

    @Test func aSignalIsReportedAs128PlusItsNumber() throws {
        let process = try BackgroundProcess(["/bin/sh", "-c", "kill -TERM $$; sleep 5"], environment: [])
        #expect(Self.exitStatus(of: process) == 128 + SIGTERM)
    }

    @Test func outputBeyondTheLimitIsLostAndTheWriterLivesOn() throws {
        // 3,000 lines of 11 bytes: the writes past 8 KiB fail (EPERM) where a closed pipe would kill
        // the writer (SIGPIPE, status 141); the shell goes on to its own exit status.
        let process = try BackgroundProcess(["/bin/sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo 0123456789; i=$((i+1)); done 2>/dev/null; exit 7"],
                                            environment: [])
        #expect(Self.exitStatus(of: process) == 7)
        let printed = process.printed()
        #expect(printed.utf8.count == BackgroundProcess.printedLimit)
        #expect(printed.hasPrefix("0123456789\n0123456789\n"))
    }

    @Test func runsInAProcessGroupOfItsOwnInOurSession() throws {
        // Fields 5 and 6 of /proc/PID/stat are the process group and the session.
        let process = try BackgroundProcess(["/bin/sh", "-c", "echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)"], environment: [])
        #expect(Self.exitStatus(of: process) == 0)
        let words = process.printed().split(whereSeparator: \.isWhitespace)
        #expect(words.count == 3 && words[0] == words[1], "pid, process group, session: \(words)")
        #expect(words.first.flatMap { pid_t($0) } == process.pid)
        #expect(words.last.flatMap { pid_t($0) } == getsid(0), "the scheduler's autogroup is the session's")
    }

    @Test func aProgramThatCannotStartIsNamed() {
        #expect { try BackgroundProcess(["/nonexistent/wireguard-go", "-f", "wg0"], environment: []) } throws: { error in
            "\(error)".contains("/nonexistent/wireguard-go")
        }
    }
}
