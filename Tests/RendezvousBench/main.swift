// `make bench-relay`, `make bench-control` (release build, root not needed; taskset pins CPUs).
//   RendezvousBench relay LANRAGE   — relay forwarding rate vs socat, same run, same conditions
//   RendezvousBench control LANRAGE — registrations/s and memory with 10,000 members
import Control
import Foundation
import LabSupport
import Net
import Rendezvous
import WireGuard
import Time

let localhost = IPAddress.v4(IPv4Address(127, 0, 0, 1))
let arguments = CommandLine.arguments
guard arguments.count >= 3 else { print("usage: RendezvousBench relay|control LANRAGE"); exit(64) }
let lanrage = arguments[2]
let work = FileManager.default.temporaryDirectory.appendingPathComponent("lcbench\(getpid())")
try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: work) }

func spawn(_ command: [String], log: URL? = nil) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
    process.arguments = ["-c", "0"] + command
    if let log {
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
    } else {
        process.standardError = FileHandle.nullDevice
    }
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    return process
}

func stop(_ process: Process) {
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
}

func rss(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

func bigBuffers(_ socket: UDPSocket) {
    var size: Int32 = 8 << 20
    setsockopt(socket.descriptor, SOL_SOCKET, SO_RCVBUF, &size, 4)
    setsockopt(socket.descriptor, SOL_SOCKET, SO_SNDBUF, &size, 4)
}

/// Sends `size`-byte datagrams from `sender` to `target` as fast as it can for `seconds`, while
/// another thread counts what arrives at `receiver`. Returns (sent, received) per second.
func blast(from sender: UDPSocket, to target: Endpoint, receiver: UDPSocket, size: Int, seconds: Double) -> (Double, Double) {
    final class Box: @unchecked Sendable { var received = 0; var done = false }
    let box = Box()
    let receiverFD = receiver.descriptor
    let thread = Thread {
        var buffer = [UInt8](repeating: 0, count: 2048)
        var idleSince: Date?
        while true {
            let count = recv(receiverFD, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count > 0 { box.received += 1; idleSince = nil; continue }
            if box.done {
                if idleSince == nil { idleSince = Date() }
                if Date().timeIntervalSince(idleSince!) > 0.2 { break }
            }
            var fds = pollfd(fd: receiverFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&fds, 1, 10)
        }
        box.done = false
    }
    thread.start()
    let payload = [UInt8](repeating: 0x5A, count: size)
    var sent = 0
    let start = Date()
    target.withSockAddr { address, length in
        payload.withUnsafeBytes { raw in
            while Date().timeIntervalSince(start) < seconds {
                for _ in 0..<64 where sendto(sender.descriptor, raw.baseAddress, size, 0, address, length) == size { sent += 1 }
                sched_yield()  // let the receiving thread (same CPU) drain: it must not be what limits the rate
            }
        }
    }
    let elapsed = Date().timeIntervalSince(start)
    box.done = true
    while box.done { usleep(10_000) }
    return (Double(sent) / elapsed, Double(box.received) / elapsed)
}

func relayBench() throws {
    let secret = Array("bench relay secret".utf8)
    let secretFile = work.appendingPathComponent("relay.secret")
    try Data(secret).write(to: secretFile)
    chmod(secretFile.path, 0o600)
    let key = Keys.relayKey(secret: secret)
    let seconds = 2.0
    print("relay forwarding on loopback, forwarder pinned to CPU 0, load generator and receiver on CPU 1, \(Int(seconds)) s per run")
    print(String(repeating: " ", count: 24) + "   sent/s     forwarded/s")
    for size in [128, 1400] {
        var relayRuns: [(Double, Double)] = [], socatRuns: [(Double, Double)] = []
        for _ in 0..<3 {
            relayRuns.append(try relayRun(size: size, seconds: seconds, key: key, secretFile: secretFile))
            socatRuns.append(try socatRun(size: size, seconds: seconds))
        }
        func median(_ runs: [(Double, Double)]) -> (Double, Double) { runs.sorted { $0.1 < $1.1 }[runs.count / 2] }
        func row(_ name: String, _ run: (Double, Double), _ all: [(Double, Double)]) {
            print(name.padding(toLength: 24, withPad: " ", startingAt: 0)
                  + String(Int(run.0)).leftPad(9) + String(Int(run.1)).leftPad(16)
                  + "   runs: " + all.map { String(Int($0.1)) }.joined(separator: ", "))
        }
        let r = median(relayRuns), s = median(socatRuns)
        row("lanrage relay, \(size) B", r, relayRuns)
        row("socat, \(size) B", s, socatRuns)
        print("  ratio relay/socat (medians of 3): " + String(format: "%.2f", r.1 / max(1, s.1)))
    }
}

func relayRun(size: Int, seconds: Double, key: [UInt8], secretFile: URL) throws -> (Double, Double) {
    let relay = try spawn([lanrage, "relay", "--listen", "127.0.0.1", "--ports", "47000-47010", "--secret-file", secretFile.path])
    defer { stop(relay) }
    let a = try UDPSocket(binding: Endpoint(localhost, 0)), b = try UDPSocket(binding: Endpoint(localhost, 0))
    bigBuffers(a); bigBuffers(b)
    let service = Endpoint(localhost, 47_000)
    var ports: [Endpoint] = []
    for (side, socket) in [a, b].enumerated() {
        let token = RelayToken(side: UInt8(side), address: localhost, expiresAt: WallClock.unixSeconds() + 60, partyID: 1,
                               pairID: [UInt8](repeating: 1, count: 16)).encoded(key: key)
        var grant: RelayAllocator.Grant?
        for _ in 0..<20 where grant == nil { grant = RelayAllocator.allocate(token: token, replyKey: Keys.relayReplyKey(relayKey: key, token: token), service: service, socket: socket, timeout: .milliseconds(250)) }
        guard let grant else { print("relay did not answer"); exit(1) }
        ports.append(grant.endpoint)
        // Each side latches its port: the relay forwards only from, and to, the latched sources.
        try socket.send(RelayMessage.latch(port: grant.endpoint.port, counter: 1).encoded(key: Keys.relayReplyKey(relayKey: key, token: token)),
                        to: grant.endpoint)
    }
    usleep(100_000)
    return blast(from: a, to: ports[0], receiver: b, size: size, seconds: seconds)
}

/// socat, a plain UDP forwarder: the first datagram fixes its peer, everything goes on to the receiver.
func socatRun(size: Int, seconds: Double) throws -> (Double, Double) {
    let a = try UDPSocket(binding: Endpoint(localhost, 0)), c = try UDPSocket(binding: Endpoint(localhost, 0))
    bigBuffers(a); bigBuffers(c)
    let socat = try spawn(["socat", "-b", "65536", "UDP4-LISTEN:47100,bind=127.0.0.1,reuseaddr", "UDP4:127.0.0.1:\(c.local.port)"])
    defer { stop(socat) }
    usleep(300_000)
    return blast(from: a, to: Endpoint(localhost, 47_100), receiver: c, size: size, seconds: seconds)
}

func controlBench() throws {
    let parties = 40, perParty = 250
    let total = parties * perParty
    // Each party's authority, the server's key, and per member a key, its certificate and its control key.
    let authorities = (0..<parties).map { Crypto.signingKeyPair(seed: [UInt8](repeating: UInt8($0), count: 31) + [0xCA]) }
    let ids = (0..<parties).map { Keys.partyID(name: "party\($0)") }
    let serverPrivate = Key.generatePrivate()
    let serverKey = MemberKey(serverPrivate.publicKey.bytes)!
    let keyFile = work.appendingPathComponent("server.key")
    try (serverPrivate.base64 + "\n").write(to: keyFile, atomically: true, encoding: .utf8)
    chmod(keyFile.path, 0o600)
    struct BenchMember { let key: MemberKey; let controlKey: [UInt8]; let certificate: [UInt8] }
    let members: [BenchMember] = try (0..<total).map { index in
        var seed = [UInt8](repeating: 0, count: 32)
        withUnsafeBytes(of: UInt64(index).bigEndian) { seed.replaceSubrange(0..<8, with: $0) }
        seed[31] = 1
        let key = MemberKey(Crypto.publicKey(ofPrivate: seed))!
        let party = index % parties
        let certificate = try MemberCertificate.issue(party: ids[party], member: key, notBefore: 0, notAfter: UInt64.max,
                                                      addresses: [IPPrefix(.v4(IPv4Address(UInt32(0x6440_0000) + UInt32(index))), 16)!],
                                                      subnets: [], name: "m\(index)", authority: authorities[party].secretKey)
        return BenchMember(key: key, controlKey: Keys.controlKey(privateKey: seed, publicKey: serverKey.bytes, member: key, server: serverKey,
                                                                 party: ids[party])!, certificate: certificate.encoded)
    }
    let partyArguments = (0..<parties).flatMap { ["--party", "party\($0)=\(Crypto.base64(authorities[$0].publicKey))"] }
    let port = try { try UDPSocket(binding: Endpoint(localhost, 0)).local.port }()
    let server = Endpoint(localhost, port)
    let process = try spawn([lanrage, "control", "--listen", "\(server)", "--key", keyFile.path, "--state", work.appendingPathComponent("state").path,
                             "--rate-limit", "1000000", "--heartbeat", "300", "--member-timeout", "900"] + partyArguments,
                             log: work.appendingPathComponent("control.log"))
    defer { stop(process) }
    usleep(500_000)
    let idle = rss(process.processIdentifier)
    let socket = try UDPSocket(binding: Endpoint(localhost, 0))
    bigBuffers(socket)
    func register(_ index: Int) -> [UInt8] {
        let member = members[index]
        return ControlMessage(partyID: ids[index % parties], timestampMillis: WallClock.unixMillis(), nonce: UInt64(index), sender: member.key,
                              body: .register(cookie: [UInt8](repeating: 0, count: ControlNotice.cookieCount), nat: .portRestrictedCone, candidates: [
                                  Candidate(.local, Endpoint(.v4(IPv4Address(203, 0, 113, UInt8(index % 250 + 1))), 51820)),
                                  Candidate(.reflexive, Endpoint(.v4(IPv4Address(198, 51, 100, UInt8(index % 250 + 1))), UInt16(20_000 + index % 40_000))),
                              ], certificate: member.certificate)).encoded(key: member.controlKey)
    }
    var acked = 0, pushes = 0, next = 0
    var buffer = [UInt8](repeating: 0, count: 2048)
    let window = 32
    let start = Date()
    var lastProgress = Date()
    while acked < total {
        while next < total && next - acked < window { try socket.send(register(next), to: server); next += 1 }
        if try Readiness.readable([socket.descriptor], timeout: .milliseconds(50)).isEmpty {
            if Date().timeIntervalSince(lastProgress) > 1 {  // lost datagrams: resend what is not acknowledged
                for member in acked..<next { try socket.send(register(member), to: server) }
                lastProgress = Date()
            }
            continue
        }
        while let (count, _) = try socket.receive(into: &buffer) {
            guard count > 20 else { continue }
            if buffer[3] == 0x81 {
                // The acknowledgement is under the control key of the member it answers (one of ours).
                let bytes = Array(buffer[..<count])
                for member in members[acked..<next] where (try? ControlMessage(authenticating: bytes, key: member.controlKey)) != nil {
                    acked += 1  // the server answers in order; a resent member may be counted twice (checked below)
                    lastProgress = Date()
                    break
                }
            } else {
                pushes += 1
            }
        }
    }
    let elapsed = Date().timeIntervalSince(start)
    usleep(500_000)
    let loaded = rss(process.processIdentifier)
    kill(process.processIdentifier, SIGHUP)
    usleep(300_000)
    let log = (try? String(contentsOf: work.appendingPathComponent("control.log"), encoding: .utf8)) ?? ""
    let online = log.split(separator: " ").last(where: { $0.hasPrefix("online=") }) ?? "online=?"
    print("  server counters: \(online) (expected \(total))")
    print("control server, \(total) members in \(parties) parties of \(perParty), one sender, window \(window), server pinned to CPU 0")
    print("  registrations/s (end to end, with pushes to the party; an X25519 and a certificate check each): \(Int(Double(total) / elapsed))  (\(String(format: "%.2f", elapsed)) s; \(pushes) pushes received)")
    print("  server RSS: idle \(idle) KiB, with \(total) members \(loaded) KiB (\((loaded - idle) * 1024 / total) bytes per member)")

    // The core alone, in this process: the server's CPU cost per registration without the network.
    var configuration = ControlCore.Configuration()
    configuration.strangerPerSecond = 1e9  // one process stands for 10,000 members: no per-source limit here
    configuration.strangerBurst = 1e9
    configuration.cookieThreshold = Int.max
    let core = ControlCore(configuration: configuration, privateKey: serverPrivate.bytes)
    for index in 0..<parties { core.addParty(name: "party\(index)", authority: authorities[index].publicKey) }
    let messages = (0..<total).map(register)
    let coreStart = Date()
    var replies = 0
    for (index, message) in messages.enumerated() {
        replies += message.withUnsafeBytes { core.handle($0, from: Endpoint(.v4(IPv4Address(UInt32(0xC633_6400) + UInt32(index % 200))), 4000),
                                                         now: Int64(index) * 1_000_000_000, wall: WallClock.unixMillis()) }.count
    }
    let coreElapsed = Date().timeIntervalSince(coreStart)
    print("  core only: \(Int(Double(total) / coreElapsed)) registrations/s, \(replies) datagrams out; accepted \(core.counters.accepted)")
    // Steady state: every member's heartbeat (one datagram in, one out).
    let heartbeats = (0..<total).map { index -> [UInt8] in
        ControlMessage(partyID: ids[index % parties], timestampMillis: WallClock.unixMillis(), nonce: UInt64(index) + 1_000_000,
                       sender: members[index].key, body: .heartbeat(revision: 0)).encoded(key: members[index].controlKey)
    }
    let beatStart = Date()
    var acks = 0
    for (index, message) in heartbeats.enumerated() {
        acks += message.withUnsafeBytes { core.handle($0, from: Endpoint(.v4(IPv4Address(UInt32(0xC633_6400) + UInt32(index % 200))), 4000),
                                                      now: Int64(total + index) * 1_000_000_000, wall: WallClock.unixMillis()) }.count
    }
    print("  core only: \(Int(Double(total) / Date().timeIntervalSince(beatStart))) heartbeats/s (\(acks) acks)")
}

extension String {
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

switch arguments[1] {
case "relay": try relayBench()
case "control": try controlBench()
default: print("unknown benchmark \(arguments[1])"); exit(64)
}
