import Foundation
import Net

/// A network namespace created with `ip netns add`; commands and sockets run inside it.
public struct Namespace: Sendable, CustomStringConvertible {
    public let name: String
    public var description: String { name }

    /// Runs `arguments` inside the namespace and returns standard output.
    @discardableResult
    public func run(_ arguments: String..., input: String? = nil) throws -> String {
        try LabSupport.run(["ip", "netns", "exec", name] + arguments, input: input)
    }

    @discardableResult
    public func run(_ arguments: [String], input: String? = nil, allowFailure: Bool = false) throws -> String {
        try LabSupport.run(["ip", "netns", "exec", name] + arguments, input: input, allowFailure: allowFailure)
    }

    /// Starts a long-running program inside the namespace; the caller (or the lab) terminates it by PID.
    public func spawn(_ arguments: [String], output: URL? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", name] + arguments
        if let output {
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            let handle = try FileHandle(forWritingTo: output)
            process.standardOutput = handle
            process.standardError = handle
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Polls `ss` until a UDP socket listens on `endpoint` (bounded), for servers started with `spawn`.
    public func waitForUDPListener(_ endpoint: Endpoint, within seconds: Double = 20) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try run("ss", "-Hunl").contains(endpoint.description) { return }
            usleep(20_000)
        }
        throw CommandFailure(command: ["ss", "-Hunl"], status: 1, output: "nothing listens on \(endpoint) in \(name)")
    }

    /// A UDP socket opened inside this namespace (the calling thread enters it for the `socket`
    /// call and returns to its own namespace before this returns).
    public func udpSocket(binding endpoint: Endpoint) throws -> UDPSocket {
        try inside { try UDPSocket(binding: endpoint) }
    }

    /// Runs `body` with the calling thread inside this namespace: sockets it opens stay there.
    public func inside<Result>(_ body: () throws -> Result) throws -> Result {
        try NamespaceSwitch.inside(name, body)
    }
}

/// `setns(2)` through `dlsym`: Glibc's Swift module does not export it.
enum NamespaceSwitch {
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    static let setns: SetNS = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { fatalError("no setns in libc") }
        return unsafeBitCast(symbol, to: SetNS.self)
    }()
    static let cloneNewNet: Int32 = 0x4000_0000

    static func inside<Result>(_ name: String, _ body: () throws -> Result) throws -> Result {
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { throw SystemError("open", "/proc/thread-self/ns/net") }
        defer { close(original) }
        let target = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw SystemError("open", "/var/run/netns/\(name)") }
        defer { close(target) }
        guard setns(target, cloneNewNet) == 0 else { throw SystemError("setns", name) }
        defer {
            if setns(original, cloneNewNet) != 0 { fatalError("cannot return to the original network namespace") }
        }
        return try body()
    }
}
