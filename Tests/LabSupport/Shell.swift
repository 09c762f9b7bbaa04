import Foundation

/// A command that failed, with what it printed, so a lab failure says what went wrong.
public struct CommandFailure: Error, CustomStringConvertible {
    public var command: [String]
    public var status: Int32
    public var output: String
    public init(command: [String], status: Int32, output: String) {
        self.command = command
        self.status = status
        self.output = output
    }
    public var description: String { "`\(command.joined(separator: " "))` exited \(status): \(output)" }
}

/// Runs a program to completion and returns its standard output; throws with stderr on failure.
@discardableResult
public func run(_ arguments: [String], input: String? = nil, allowFailure: Bool = false) throws -> String {
    let result = try execute(arguments, input: input)
    if result.status != 0 && !allowFailure {
        throw CommandFailure(command: arguments, status: result.status, output: result.error + result.out)
    }
    return result.out
}

/// Runs a program to completion: its exit status, standard output and standard error, whatever the status.
public func execute(_ arguments: [String], input: String? = nil) throws -> (status: Int32, out: String, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
    try process.run()
    if let input {
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try? inPipe.fileHandleForWriting.close()
    }
    // Read both pipes before waiting, so a chatty program cannot block on a full pipe.
    let group = DispatchGroup()
    nonisolated(unsafe) var errorData = Data()
    group.enter()
    DispatchQueue.global().async {
        errorData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outputData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

/// Where the package's built products are (beside the test bundle).
public enum Products {
    public static var directory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    /// The `lanrage` executable built with the tests, or `LANRAGE_BIN` when set (a cross build, or
    /// a script that runs one under qemu-user).
    public static var lanrage: String {
        if let path = ProcessInfo.processInfo.environment["LANRAGE_BIN"], !path.isEmpty { return path }
        var url = directory
        // `swift test` runs <dir>/lanragePackageTests.xctest; the executable sits in <dir>.
        if url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
        return url.appendingPathComponent("lanrage").path
    }
}
