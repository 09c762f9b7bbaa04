import CLinux
import Net

/// A program started in the background (wireguard-go in the foreground mode, which it never leaves),
/// in a process group of its own so that a terminal's Ctrl-C reaches only the caller. (Not a session of
/// its own: with the scheduler's autogroups, every session gets an equal share of the CPU, and a party
/// of wireguard-go processes would starve the agents sharing one.) What it prints goes to
/// a small in-memory file sealed against growing: a daemon that logs for months cannot fill memory
/// with it, and never dies of a closed pipe (Go exits on EPIPE on standard output or error).
final class BackgroundProcess {
    let arguments: [String]
    let pid: pid_t
    private let printedFile: Int32
    private var status: Int32?

    /// How much of what it prints is kept; writes beyond fail and are lost.
    static let printedLimit = 8192

    /// Starts `arguments[0]` (a path) with `extra` environment entries added to ours.
    init(_ arguments: [String], environment extra: [String]) throws(WireGuardError) {
        var environment = extra
        var index = 0
        while let entry = lanrage_environ()[index] {
            environment.append(String(cString: entry))
            index += 1
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let file = lanrage_memfd_create(arguments[0])
        guard file >= 0 else { throw WireGuardError(.failed, SystemError("memfd_create", arguments[0]).description) }
        guard ftruncate(file, off_t(Self.printedLimit)) == 0, lanrage_seal_size(file) == 0 else {
            let error = SystemError("sealing the output file", arguments[0])
            close(file)
            throw WireGuardError(.failed, error.description)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, file, 1)
        posix_spawn_file_actions_adddup2(&actions, file, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        // It must not keep any descriptor we inherited (a caller's pipe would never close).
        Self.markDescriptorsCloseOnExec()
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard spawned == 0 else {
            close(file)
            throw WireGuardError(.failed, SystemError("posix_spawn", arguments[0], errno: spawned).description)
        }
        self.arguments = arguments
        self.pid = pid
        printedFile = file
    }

    deinit { close(printedFile) }

    /// Its exit status (128 + the signal when killed) once it has exited, reaping it; nil while it runs.
    func exitStatus() -> Int32? {
        if status == nil {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid {
                // WIFEXITED / WEXITSTATUS are macros.
                status = raw & 0x7F == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
            }
        }
        return status
    }

    /// What it has printed, up to `printedLimit` bytes.
    func printed() -> String {
        var bytes = [UInt8](repeating: 0, count: Self.printedLimit)
        let count = bytes.withUnsafeMutableBytes { pread(printedFile, $0.baseAddress!, $0.count, 0) }
        return String(decoding: bytes.prefix(max(0, count)).prefix { $0 != 0 }, as: UTF8.self)
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
            let flags = lanrage_fcntl(fd, F_GETFD, 0)
            if flags >= 0 { _ = lanrage_fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }
}
