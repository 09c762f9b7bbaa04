import CLinux
import Net
import Time

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
            if lanrage_errno() == ENOENT { return [] }
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
            guard stat(socketFolder + "/" + fileName, &info) == 0, info.st_mode & mode_t(S_IFMT) == mode_t(S_IFSOCK) else { continue }
            let name = String(fileName.dropLast(5))
            // A socket whose interface is gone in this namespace belongs to another namespace or a dead daemon.
            guard if_nametoindex(name) != 0 else { continue }
            names.append(name)
        }
        return names.sorted()
    }

    /// Starts wireguard-go in its foreground mode (one Go runtime to start, not two as when it forks
    /// itself into the background), in a process group of its own; the creation's `wait()` waits (bounded)
    /// until its UAPI socket answers, or reports how it exited and what it printed.
    public func beginCreatingInterface(named name: String) throws(WireGuardError) -> InterfaceCreation {
        try InterfaceName.validate(name)
        if if_nametoindex(name) != 0 {
            throw WireGuardError(.exists, "interface \(name) already exists (delete it with 'ip link del \(name)' or choose another name)")
        }
        guard let program = Self.findInPath(userspaceProgram) else {
            throw WireGuardError(.unavailable, "no WireGuard kernel module and '\(userspaceProgram)' is not installed (apt-get install wireguard-go)")
        }
        let process = try BackgroundProcess([program, "-f", name], environment: ["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1"])
        return InterfaceCreation(process: process) { [self] () throws(WireGuardError) in
            let deadline = MonotonicTime.nanoseconds() + Int64(timeout) * 1_000_000_000
            while true {
                if let status = process.exitStatus() {
                    let detail = process.printed().split(separator: "\n").filter { !$0.contains("│") && !$0.contains("─") }
                        .suffix(3).joined(separator: " / ")
                    throw WireGuardError(Privileges.hasNetAdmin() ? .failed : .permission,
                                         "\(program) \(name) exited with status \(status): \(detail)" + (Privileges.hasNetAdmin() ? "" : " (run as root or grant CAP_NET_ADMIN)"))
                }
                if (try? device(named: name)) != nil { return }
                if MonotonicTime.nanoseconds() > deadline {
                    kill(process.pid, SIGTERM)
                    throw WireGuardError(.failed, "\(program) \(name) started but \(socketPath(name)) does not answer within \(timeout) s")
                }
                usleep(1_000)
            }
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
        let fd = socket(AF_UNIX, lanrage_sock_stream | lanrage_sock_cloexec, 0)
        guard fd >= 0 else { throw WireGuardError(.failed, SystemError("socket", path).description) }
        defer { close(fd) }
        _ = lanrage_set_socket_timeouts(fd, Int64(timeout) * 1000)
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
            let error = lanrage_errno()
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
                if lanrage_errno() == EINTR { continue }
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
                if lanrage_errno() == EINTR { continue }
                throw WireGuardError(.failed, SystemError("recv", path).description)
            }
            if count == 0 { break }
            reply += buffer[0..<count]
            if reply.count >= 2, reply[reply.count - 1] == 10, reply[reply.count - 2] == 10 { break }
        }
        return reply
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
}
