import Foundation

/// A Debian system to install a package into and run it from (`make deb-test`): an overlay on a
/// root made by debootstrap (`Tests/Scripts/deb-root.sh`), writable, thrown away with its lab,
/// the root below untouched for the next run. Commands run chrooted in it, each in a mount
/// namespace of its own with /dev, /proc and /sys mounted: those mounts end with the command. The
/// overlay itself is unmounted when the lab shuts down (after its processes are stopped).
public final class DebianRoot {
    /// The overlay's mount point: the chroot's `/`, as the host sees it.
    public let path: String

    /// Mounts an overlay on `lower` (a debootstrapped root) in `lab`'s directory.
    public init(_ lab: Lab, lower: String) throws {
        let base = lab.directory.appendingPathComponent("debian-root")
        let upper = base.appendingPathComponent("upper").path, work = base.appendingPathComponent("work").path
        path = base.appendingPathComponent("root").path
        for directory in [upper, work, path] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try LabSupport.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)", path])
        lab.atShutdown { [path] in DebianRoot.unmount(path) }
    }

    /// Unmounts the overlay; lazily when something still holds it, so the lab's files can go.
    static func unmount(_ path: String) {
        if (try? LabSupport.run(["umount", path], allowFailure: false)) == nil {
            _ = try? LabSupport.run(["umount", "--lazy", path], allowFailure: true)
        }
    }

    /// The command line that runs `arguments` in the root — with a clean environment, as root or,
    /// with `user`, as that user of the root with its groups there (setpriv). For `Lab.spawn` and
    /// `Namespace.run`, or to run as it is.
    public func command(_ arguments: [String], as user: String? = nil) -> [String] {
        let script = #"mount --bind /dev "$0/dev" && mount -t proc proc "$0/proc" && mount -t sysfs sysfs "$0/sys" && exec chroot "$0" "$@""#
        let switchUser = user.map { ["setpriv", "--reuid=\($0)", "--regid=\($0)", "--init-groups", "--"] } ?? []
        return ["unshare", "--mount", "sh", "-c", script, path, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
                "DEBIAN_FRONTEND=noninteractive"] + switchUser + arguments
    }

    /// Seconds a command of `run` or `execute` may take before it is stopped.
    public static let limit = 120

    /// Runs `arguments` in the root, bounded; standard output, or a `CommandFailure` with what it printed.
    @discardableResult
    public func run(_ arguments: [String], as user: String? = nil) throws -> String {
        try LabSupport.run(["timeout", "\(Self.limit)"] + command(arguments, as: user))
    }

    /// Runs `arguments` in the root (in `namespace` when given), bounded: exit status, standard output and
    /// standard error, whatever the status.
    public func execute(_ arguments: [String], as user: String? = nil, in namespace: Namespace? = nil)
        throws -> (status: Int32, out: String, error: String) {
        try LabSupport.execute((namespace.map { ["ip", "netns", "exec", $0.name] } ?? []) + ["timeout", "\(Self.limit)"]
                                + command(arguments, as: user))
    }

    /// The host's path of `file`, a path in the root.
    public func host(_ file: String) -> String { path + file }

    /// Whether `file` (a path in the root) exists there.
    public func exists(_ file: String) -> Bool { FileManager.default.fileExists(atPath: host(file)) }

    /// The text of `file`, a path in the root; empty when it cannot be read.
    public func contents(_ file: String) -> String { (try? String(contentsOfFile: host(file), encoding: .utf8)) ?? "" }
}
