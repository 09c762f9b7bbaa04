#if canImport(Glibc)
import Glibc
#endif
import Net

/// Userspace WireGuard (wireguard-go, boringtun) over the cross-platform UAPI text protocol on
/// `/var/run/wireguard/IFNAME.sock`: `get=1` and `set=1`, keys in hex, answered by `errno=N`.
public final class UAPIBackend: WireGuardBackend {
    public let kind = BackendKind.uapi
    /// The folder of the UAPI sockets.
    public let socketFolder: String
    /// The program started to create an interface.
    public let userspaceProgram: String
    /// Seconds to wait for a socket to answer or for wireguard-go to start.
    public let timeout: Int
    private let links = RouteNetlink.self

    public init(socketFolder: String = "/var/run/wireguard", userspaceProgram: String = "wireguard-go", timeout: Int = 5) {
        self.socketFolder = socketFolder
        self.userspaceProgram = userspaceProgram
        self.timeout = timeout
    }

    /// Whether a UAPI socket exists or the userspace program is installed.
    public func userspaceAvailable() -> Bool {
        if let names = try? interfaceNames(), !names.isEmpty { return true }
        return Self.findInPath(userspaceProgram) != nil
    }

    public func socketPath(_ name: String) -> String { "\(socketFolder)/\(name).sock" }

    public func interfaceNames() throws(WireGuardError) -> [String] {
        guard let directory = opendir(socketFolder) else {
            if errno == ENOENT { return [] }
            throw WireGuardError(.failed, SystemError("opendir", socketFolder).description)
        }
        defer { closedir(directory) }
        var names: [String] = []
        for _ in 0..<100_000 {
            guard let entry = readdir(directory) else { break }
            let fileName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard fileName.hasSuffix(".sock") else { continue }
            var info = stat()
            guard stat(socketFolder + "/" + fileName, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { continue }
            let name = String(fileName.dropLast(5))
            // A socket whose interface is gone in this namespace belongs to another namespace or a dead daemon.
            guard if_nametoindex(name) != 0 else { continue }
            names.append(name)
        }
        return names.sorted()
    }

    public func createInterface(named name: String) throws(WireGuardError) {
        try InterfaceName.validate(name)
        if if_nametoindex(name) != 0 {
            throw WireGuardError(.exists, "interface \(name) already exists (delete it with 'ip link del \(name)' or choose another name)")
        }
        guard let program = Self.findInPath(userspaceProgram) else {
            throw WireGuardError(.unavailable, "no WireGuard kernel module and '\(userspaceProgram)' is not installed (apt-get install wireguard-go)")
        }
        // wireguard-go creates the TUN device and the UAPI socket, then forks into the background and exits 0.
        let (status, output) = try Self.spawnAndWait(
            [program, name], environment: ["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1"], timeout: timeout)
        guard status == 0 else {
            let detail = output.split(separator: "\n").filter { !$0.contains("│") && !$0.contains("─") }.suffix(3).joined(separator: " / ")
            throw WireGuardError(Privileges.hasNetAdmin() ? .failed : .permission,
                                 "\(program) \(name) exited with status \(status): \(detail)" + (Privileges.hasNetAdmin() ? "" : " (run as root or grant CAP_NET_ADMIN)"))
        }
        // Wait (bounded) until the socket answers.
        let deadline = MonotonicTime.nanoseconds() + Int64(timeout) * 1_000_000_000
        while true {
            if (try? device(named: name)) != nil { return }
            if MonotonicTime.nanoseconds() > deadline {
                throw WireGuardError(.failed, "\(program) \(name) started but \(socketPath(name)) does not answer")
            }
            usleep(10_000)
        }
    }

    public func deleteInterface(named name: String) throws(WireGuardError) {
        // Deleting the TUN link makes wireguard-go exit and remove its socket.
        try RouteNetlink.deleteLink(name)
        let deadline = MonotonicTime.nanoseconds() + Int64(timeout) * 1_000_000_000
        while access(socketPath(name), F_OK) == 0, MonotonicTime.nanoseconds() < deadline { usleep(10_000) }
    }

    public func device(named name: String) throws(WireGuardError) -> Device {
        var reply = try exchange(name, "get=1\n\n")
        defer { Secrets.wipe(&reply) }
        return try UAPIProtocol.parseGet(reply, name: name)
    }

    public func configure(_ name: String, _ change: DeviceChange) throws(WireGuardError) {
        let reply = try exchange(name, UAPIProtocol.setRequest(change))
        try UAPIProtocol.checkSetReply(String(decoding: reply, as: UTF8.self), name: name)
    }

    /// Sends `request` on the interface's socket and reads the reply up to its blank line.
    private func exchange(_ name: String, _ request: String) throws(WireGuardError) -> [UInt8] {
        try InterfaceName.validate(name)
        let path = socketPath(name)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw WireGuardError(.failed, SystemError("socket", path).description) }
        defer { close(fd) }
        var time = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw WireGuardError(.invalidInput, "UAPI socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let error = errno
            switch error {
            case ENOENT, ECONNREFUSED:
                throw WireGuardError(.notFound, "no userspace WireGuard interface \(name): \(path) \(error == ENOENT ? "does not exist" : "refuses connections") (create it with 'lanrage wg apply' or start wireguard-go \(name))")
            case EACCES, EPERM:
                throw WireGuardError(.permission, "\(SystemError("connect", path, errno: error)) ")
            default:
                throw WireGuardError(.failed, SystemError("connect", path, errno: error).description)
            }
        }
        var bytes = Array(request.utf8)
        defer { Secrets.wipe(&bytes) }
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw WireGuardError(.failed, SystemError("send", path).description)
            }
            offset += sent
        }
        var reply = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        defer { Secrets.wipe(&buffer) }
        let limit = 256 << 20
        while reply.count < limit {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw WireGuardError(.failed, SystemError("recv", path).description)
            }
            if count == 0 { break }
            reply += buffer[0..<count]
            if reply.count >= 2, reply[reply.count - 1] == 10, reply[reply.count - 2] == 10 { break }
        }
        return reply
    }

    /// Sets FD_CLOEXEC on every descriptor above standard error.
    static func markDescriptorsCloseOnExec() {
        guard let directory = opendir("/proc/self/fd") else { return }
        defer { closedir(directory) }
        let own = dirfd(directory)
        for _ in 0..<65536 {
            guard let entry = readdir(directory) else { break }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd > 2, fd != own else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    static func findInPath(_ program: String) -> String? {
        if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs `arguments` with extra environment entries and waits (bounded) for it to exit; returns its status
    /// and what it wrote to standard output and error (a pipe, so it never mixes with ours).
    static func spawnAndWait(_ arguments: [String], environment extra: [String], timeout: Int) throws(WireGuardError) -> (Int32, String) {
        var environment = extra
        var index = 0
        while let entry = environ[index] {
            environment.append(String(cString: entry))
            index += 1
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw WireGuardError(.failed, SystemError("pipe", arguments[0]).description) }
        _ = fcntl(pipeEnds[0], F_SETFL, O_NONBLOCK)
        _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)
        defer { close(pipeEnds[0]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 2)
        // The daemon it forks must not keep any descriptor we inherited (a caller's pipe would never close).
        markDescriptorsCloseOnExec()
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
        close(pipeEnds[1])
        var output = [UInt8]()
        func drain() {
            var buffer = [UInt8](repeating: 0, count: 4096)
            for _ in 0..<64 {
                let count = buffer.withUnsafeMutableBytes { read(pipeEnds[0], $0.baseAddress!, $0.count) }
                guard count > 0 else { return }
                if output.count < 65536 { output += buffer[0..<count] }
            }
        }
        guard spawned == 0 else {
            throw WireGuardError(.failed, SystemError("posix_spawn", arguments[0], errno: spawned).description)
        }
        let deadline = MonotonicTime.nanoseconds() + Int64(timeout) * 1_000_000_000
        var status: Int32 = 0
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            drain()
            if done == pid { break }
            if done < 0, errno != EINTR { throw WireGuardError(.failed, SystemError("waitpid", arguments[0]).description) }
            if MonotonicTime.nanoseconds() > deadline {
                kill(pid, SIGTERM)
                waitpid(pid, &status, 0)
                throw WireGuardError(.failed, "\(arguments.joined(separator: " ")) did not finish within \(timeout) s")
            }
            usleep(5_000)
        }
        drain()
        // WIFEXITED / WEXITSTATUS are macros.
        return (status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F), String(decoding: output, as: UTF8.self))
    }
}
