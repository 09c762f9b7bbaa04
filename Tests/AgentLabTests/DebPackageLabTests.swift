import Foundation
import LabSupport
import Net
import Testing

/// What `make deb-test` hands the suite: the package and the debootstrapped root.
enum DebPackageUnderTest {
    static let package = ProcessInfo.processInfo.environment["LANRAGE_DEB"].flatMap { $0.isEmpty ? nil : $0 }
    static let root = ProcessInfo.processInfo.environment["LANRAGE_DEB_ROOT"].flatMap { $0.isEmpty ? nil : $0 }
}

/// The Debian package (`make deb`) installed with dpkg into Debian 12 (debootstrap's minbase with
/// wireguard-go, `DebianRoot`): its files, group and units, a purge; then its agent, started from
/// that root with a configuration written where the unit expects it, registers and pings a peer
/// across the overlay, and a member of the `lanrage` group reads its status. `make deb-test` builds
/// the package and the root and runs this suite with `LANRAGE_DEB` (the package) and
/// `LANRAGE_DEB_ROOT` (the root) set.
@Suite(.enabled(if: Lab.isAvailable && DebPackageUnderTest.package != nil && DebPackageUnderTest.root != nil,
                "the package test runs from make deb-test (root, LANRAGE_DEB and LANRAGE_DEB_ROOT set)"),
       .serialized)
struct DebPackageLabTests {
    static let package = DebPackageUnderTest.package
    static let root = DebPackageUnderTest.root
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let units = ["lanrage", "lanrage-control", "lanrage-relay"]

    /// The release of the `lanrage` built with the tests (`lanrage 0.1.0 (…)`): the package's version.
    static func release() throws -> String {
        let words = try LabSupport.run([Products.lanrage, "version"]).split(separator: " ")
        return words.count > 1 ? String(words[1]) : "?"
    }

    /// A Debian root in `lab` with the package installed by `dpkg -i`.
    static func installed(in lab: Lab) throws -> DebianRoot {
        let debian = try DebianRoot(lab, lower: try #require(root))
        try FileManager.default.copyItem(atPath: try #require(package), toPath: debian.host("/tmp/lanrage.deb"))
        try debian.run(["dpkg", "-i", "/tmp/lanrage.deb"])
        return debian
    }

    @Test func installsItsFilesGroupAndUnitsAndPurges() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let debian = try Self.installed(in: lab)
        let version = try Self.release()
        // Again, as an upgrade does: the maintainer scripts run twice.
        try debian.run(["dpkg", "-i", "/tmp/lanrage.deb"])
        #expect(try debian.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "lanrage"]) == "install ok installed \(version)")
        #expect(try debian.run(["dpkg", "--verify", "lanrage"]).isEmpty, "files differ from the package's md5sums")

        let printed = try debian.run(["lanrage", "--version"])
        #expect(printed.hasPrefix("lanrage \(version) (") && printed.contains("x86_64, Embedded Swift"), "\(printed)")

        // The units are docs/service/'s, running /usr/bin/lanrage.
        for unit in Self.units {
            let source = try String(contentsOf: Self.repository.appendingPathComponent("docs/service/\(unit).service"), encoding: .utf8)
            let packaged = debian.contents("/lib/systemd/system/\(unit).service")
            #expect(packaged == source.replacingOccurrences(of: "/usr/local/bin/lanrage", with: "/usr/bin/lanrage"), "\(unit).service")
            #expect(packaged.contains("\nExecStart=/usr/bin/lanrage \(unit == "lanrage" ? "agent" : String(unit.dropFirst(8))) "), "\(unit).service")
            #expect(!packaged.contains("/usr/local/"), "\(unit).service")
        }
        #expect(debian.contents("/lib/systemd/system/lanrage.service").contains("\nExecStart=/usr/bin/lanrage agent --config /etc/lanrage/agent.conf\n"))

        // Examples only, as conffiles; no live configuration. The directory is root's alone.
        for example in ["agent.conf.example", "control.env.example"] {
            let source = try String(contentsOf: Self.repository.appendingPathComponent("docs/service/\(example)"), encoding: .utf8)
            #expect(debian.contents("/etc/lanrage/\(example)") == source, "\(example)")
        }
        #expect(!debian.exists("/etc/lanrage/agent.conf") && !debian.exists("/etc/lanrage/control.env"))
        let conffiles = try debian.run(["dpkg-query", "-W", "-f=${Conffiles}", "lanrage"])
        #expect(conffiles.contains("/etc/lanrage/agent.conf.example ") && conffiles.contains("/etc/lanrage/control.env.example "), "\(conffiles)")
        #expect(try debian.run(["stat", "-c", "%a %U", "/etc/lanrage"]) == "700 root\n")

        // The system group for the status socket.
        let group = try debian.execute(["getent", "group", "lanrage"])
        let gid = Int(group.out.split(separator: ":", omittingEmptySubsequences: false).dropFirst(2).first ?? "") ?? -1
        #expect(group.status == 0 && (1..<1000).contains(gid), "no system group lanrage: \(group)")

        // Debian's docs: copyright, and the changelog in Debian's format naming this version.
        #expect(debian.exists("/usr/share/doc/lanrage/copyright"))
        let changelog = try debian.run(["gzip", "-dc", "/usr/share/doc/lanrage/changelog.gz"])
        #expect(changelog.hasPrefix("lanrage (\(version)) "), "\(changelog)")

        // A purge takes the package's files and the group, and leaves the administrator's key.
        try Data("key\n".utf8).write(to: URL(fileURLWithPath: debian.host("/etc/lanrage/private.key")))
        try debian.run(["dpkg", "--purge", "lanrage"])
        #expect(!debian.exists("/usr/bin/lanrage") && !debian.exists("/lib/systemd/system/lanrage.service"))
        #expect(!debian.exists("/etc/lanrage/agent.conf.example") && debian.exists("/etc/lanrage/private.key"))
        #expect(try debian.execute(["getent", "group", "lanrage"]).status != 0, "the group outlived the purge")
    }

    @Test func itsAgentRegistersAndPingsAPeer() throws {
        let lab = try Lab()
        defer { lab.shutdown() }
        let sites = [try lab.addSite(.fullCone), try lab.addSite(.fullCone)]
        let party = try PartyLab(lab)
        let debian = try Self.installed(in: lab)
        try party.startControl()

        // Installed, not configured: the agent does not start on the examples, and exits with a
        // status the unit does not restart on.
        let unconfigured = try debian.execute(["lanrage", "agent", "--config", "/etc/lanrage/agent.conf"], in: sites[0].client)
        let unit = debian.contents("/lib/systemd/system/lanrage.service")
        let notRestarted = unit.split(separator: "\n").first { $0.hasPrefix("RestartPreventExitStatus=") }?
            .dropFirst("RestartPreventExitStatus=".count).split(separator: " ").compactMap { Int32($0) } ?? []
        #expect(notRestarted.contains(unconfigured.status) && unconfigured.error.contains("/etc/lanrage/agent.conf"),
                "\(unconfigured), RestartPreventExitStatus=\(notRestarted)")

        // The member's key, certificate and agent.conf where the unit expects them; the status
        // socket at its default, /var/run/lanrage/agent.sock.
        let packaged = try party.prepareAgent(in: sites[0].client, index: 1)
        let configuration = try String(contentsOf: packaged.configuration, encoding: .utf8)
            .replacingOccurrences(of: packaged.directory.path, with: "/etc/lanrage")
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("StatusSocket") }.joined(separator: "\n")
        try configuration.write(toFile: debian.host("/etc/lanrage/agent.conf"), atomically: true, encoding: .utf8)
        for file in ["private.key", "member.cert"] {
            try FileManager.default.copyItem(atPath: packaged.directory.appendingPathComponent(file).path, toPath: debian.host("/etc/lanrage/\(file)"))
        }
        chmod(debian.host("/etc/lanrage/agent.conf"), 0o600)
        chmod(debian.host("/etc/lanrage/private.key"), 0o600)
        let started = Date()
        packaged.process = try lab.spawn(in: sites[0].client, debian.command(["lanrage", "agent", "--config", "/etc/lanrage/agent.conf", "--log-level", "debug"]),
                                         log: "agent1.log")
        let other = try party.startAgent(in: sites[1].client, index: 2)

        // alice, in group lanrage, reads the status without root: registered, the peer's tunnel working.
        try debian.run(["useradd", "--no-create-home", "--groups", "lanrage", "alice"])
        try debian.run(["useradd", "--no-create-home", "bob"])
        let deadline = Date().addingTimeInterval(60)
        var status = try debian.execute(["lanrage", "status"], as: "alice")
        for _ in 0..<300 {
            guard status.status != 0, Date() < deadline else { break }
            usleep(200_000)
            status = try debian.execute(["lanrage", "status"], as: "alice")
        }
        #expect(status.status == 0, "\(status) \(party.log(of: packaged).suffix(3000))")
        let healthy = Date().timeIntervalSince(started)
        // The agent and the wireguard-go it started are the root's: /usr/bin/lanrage, /usr/bin/wireguard-go.
        let agentPID = packaged.process?.processIdentifier ?? 0, dataPlanePID = Lab.wireguardGo(serving: packaged.interface) ?? 0
        for (pid, program) in [(agentPID, "/usr/bin/lanrage"), (dataPlanePID, "/usr/bin/wireguard-go")] {
            let root = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/root")
            let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
            #expect(pid > 0 && root == debian.path && executable == debian.host(program), "\(program) (pid \(pid)): root \(root ?? "?"), executable \(executable ?? "?")")
        }
        let json = try debian.execute(["lanrage", "status", "--json"], as: "alice")
        let control = (try? JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])?["control"] as? [String: Any]
        #expect(control?["state"] as? String == "registered", "\(json)")
        #expect(try debian.run(["stat", "-c", "%a %U %G", "/var/run/lanrage/agent.sock"]) == "660 root lanrage\n")

        let pingedOut = packaged.pingUntilAnswered(other.overlay, within: 30) != nil
        let pingedIn = other.pingUntilAnswered(packaged.overlay, within: 30) != nil
        #expect(pingedOut, "no ping from the packaged agent: \(party.log(of: packaged).suffix(3000))")
        #expect(pingedIn, "no ping to the packaged agent: \(party.log(of: other).suffix(3000))")

        // bob is not in the group: refused.
        let refused = try debian.execute(["lanrage", "status"], as: "bob")
        #expect(refused.status != 0 && refused.error.contains("permission denied"), "\(refused)")

        #expect(packaged.stop(), "the packaged agent did not stop on SIGTERM")
        party.keepLogs(of: [packaged, other], as: "deb", control: true)
        if status.status == 0 && pingedOut && pingedIn {
            print("DEB-LAB the packaged agent: registered and its peer's tunnel up after \(Int(healthy * 1000)) ms (status as a member of group lanrage), pings cross")
        }
    }
}
