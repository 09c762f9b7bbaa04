import Foundation

/// Network namespaces and veth pairs for tests, named `lw<pid>…` so parallel runs and the STUN
/// tests (`ls…`) never collide. Everything created is torn down by `tearDown()`, even after a failure.
final class Lab: @unchecked Sendable {
    let prefix: String
    private(set) var namespaces: [String] = []

    init(tag: String) {
        prefix = "lw\(getpid() % 100_000)\(tag)"
        precondition(prefix.count <= 12, "interface names must stay within 15 characters")
    }

    static var isRoot: Bool { geteuid() == 0 }

    /// Deletes namespaces left by earlier runs of these tests whose process is gone.
    static func removeStale() {
        guard let list = try? Run.command(["ip", "netns", "list"]) else { return }
        for line in list.output.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("lw"), let digits = Int(name.dropFirst(2).prefix { $0.isNumber }) else { continue }
            if digits == Int(getpid() % 100_000) { continue }
            // The pid is truncated, so it may be reused: only remove when no such process exists.
            if kill(pid_t(digits), 0) == 0 { continue }
            deleteNamespace(name)
        }
    }

    /// A new namespace with loopback up.
    func namespace(_ suffix: String) throws -> String {
        let name = prefix + suffix
        Lab.deleteNamespace(name)
        try Run.checked(["ip", "netns", "add", name])
        namespaces.append(name)
        try Run.checked(["ip", "-n", name, "link", "set", "lo", "up"])
        return name
    }

    /// Runs a command inside `namespace`.
    @discardableResult
    func run(_ namespace: String, _ arguments: [String], input: Data? = nil, environment: [String: String] = [:]) throws -> Run.Result {
        try Run.command(["ip", "netns", "exec", namespace] + arguments, input: input, environment: environment)
    }

    /// Deletes every link in the namespace first (so a wireguard-go inside exits), then the namespace.
    static func deleteNamespace(_ name: String) {
        if let links = try? Run.command(["ip", "-n", name, "-o", "link", "show"]), links.status == 0 {
            for line in links.output.split(separator: "\n") {
                let parts = line.split(separator: ":")
                guard parts.count > 1 else { continue }
                let link = parts[1].trimmingCharacters(in: .whitespaces).split(separator: "@").first.map(String.init) ?? ""
                if link != "lo" { _ = try? Run.command(["ip", "-n", name, "link", "del", link]) }
            }
        }
        _ = try? Run.command(["ip", "netns", "del", name])
    }

    func tearDown() {
        for name in namespaces.reversed() { Lab.deleteNamespace(name) }
        namespaces = []
    }

    /// Polls `condition` every 50 ms until it holds or `seconds` pass.
    static func waitUntil(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }
}

/// Running a closure with the calling thread moved into a network namespace (netns is per thread).
enum InNamespace {
    private final class Box<T>: @unchecked Sendable {
        var result: Result<T, Error>?
        let body: () throws -> T
        init(_ body: @escaping () throws -> T) { self.body = body }
    }

    static func run<T>(_ namespace: String, _ body: @escaping () throws -> T) throws -> T {
        let box = Box<T>(body)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            let fd = open("/var/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0, c_setns(fd, 0x4000_0000 /* CLONE_NEWNET */) == 0 else {
                box.result = .failure(Run.CommandFailed(command: "setns \(namespace)", status: errno, error: String(cString: strerror(errno))))
                return
            }
            close(fd)
            box.result = Result { try box.body() }
        }
        thread.start()
        done.wait()
        return try box.result!.get()
    }
}

@_silgen_name("setns")
private func c_setns(_ fd: Int32, _ type: Int32) -> Int32
