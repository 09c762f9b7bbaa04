import Foundation

/// Running programs from tests: `wg`, `ip`, `wireguard-go`, `ping`, and the built `lanrage`.
enum Run {
    struct Result {
        var status: Int32
        var output: String
        var error: String
    }

    /// The folder holding the built products (the test bundle sits beside `lanrage`).
    static var productsFolder: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    static var lanrage: String { productsFolder.appendingPathComponent("lanrage").path }

    /// Runs `arguments[0]` (looked up in PATH when it has no slash) with `input` on stdin; waits at most `timeout` seconds.
    @discardableResult
    static func command(_ arguments: [String], input: Data? = nil, environment: [String: String] = [:],
                        timeout: TimeInterval = 30) throws -> Result {
        let process = Process()
        if arguments[0].contains("/") {
            process.executableURL = URL(fileURLWithPath: arguments[0])
            process.arguments = Array(arguments.dropFirst())
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(input) }
        try inPipe.fileHandleForWriting.close()
        // Read both pipes concurrently so a chatty child never blocks.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            _ = group.wait(timeout: .now() + 2)
            throw TimeoutError(command: arguments.joined(separator: " "))
        }
        process.waitUntilExit()
        _ = group.wait(timeout: .now() + 5)
        return Result(status: process.terminationStatus,
                      output: String(decoding: outData, as: UTF8.self),
                      error: String(decoding: errData, as: UTF8.self))
    }

    /// Runs a command and fails unless it exits 0.
    @discardableResult
    static func checked(_ arguments: [String], input: Data? = nil, environment: [String: String] = [:]) throws -> String {
        let result = try command(arguments, input: input, environment: environment)
        guard result.status == 0 else {
            throw CommandFailed(command: arguments.joined(separator: " "), status: result.status, error: result.error + result.output)
        }
        return result.output
    }

    struct TimeoutError: Error, CustomStringConvertible {
        var command: String
        var description: String { "timed out: \(command)" }
    }

    struct CommandFailed: Error, CustomStringConvertible {
        var command: String
        var status: Int32
        var error: String
        var description: String { "\(command) exited \(status): \(error)" }
    }
}
