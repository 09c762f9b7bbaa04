import CLinux
import Agent
import Commands
import Net
import Output
import Punch
import WireGuard
import Time

/// `lanrage punch`: one coordinated punch toward one peer, from the WireGuard port — what the
/// Punching state of the agent does, as a command for labs and debugging.
enum PunchCommand {
    static let command = Command(
        "punch",
        abstract: "Punch a UDP hole to a peer from the WireGuard port and print the endpoint pinned.",
        discussion: """
            Both sides run this at the same moment (--start-at), each with its own private key and the \
            other's public key: bursts of authenticated LANRAGE_PUNCH go to every candidate, PUNCHes are \
            answered with LANRAGE_PUNCH_ACK from the same port, and the first authenticated proof pins \
            the peer's endpoint. When WireGuard already listens on --port, the raw path is used. Exits 0 \
            with the pinned endpoint, 1 when no direct path was found.
            """,
        options: [
            .value("port", "P", help: "The local UDP port (the WireGuard listen port).", default: "51820"),
            .value("key-file", "FILE", help: "This member's WireGuard private key, base64 (as written by 'lanrage genkey')."),
            .value("peer", "KEY", help: "The peer's WireGuard public key, base64."),
            .repeated("candidate", "IP:PORT", help: "A candidate endpoint of the peer: local addresses first, then reflexive."),
            .value("session", "N", help: "The punch session both sides share (from the control server).", default: "1"),
            .value("start-at", "UNIX_MS", help: "Wall-clock time (milliseconds since 1970) to send the first packet; now when absent."),
            .value("packets", "N", help: "Packets per burst.", default: "5"),
            .value("interval-ms", "MS", help: "Time between the packets of a burst.", default: "100"),
            .value("ack-timeout-ms", "MS", help: "How long to wait for an ACK after a burst.", default: "2000"),
            .value("bursts", "N", help: "Bursts before giving up.", default: "2"),
            .flag("json", help: "Print the result as JSON."),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        let port = try invocation.value("port", as: UInt16.self) ?? 51820
        guard let keyFile = try invocation.value("key-file", as: String.self) else { throw invocation.usageError("missing --key-file FILE") }
        guard let peerText = try invocation.value("peer", as: String.self) else { throw invocation.usageError("missing --peer KEY") }
        guard let peer = Key(base64: peerText) else { throw invocation.usageError("invalid value '\(peerText)' for --peer (expected a base64 WireGuard public key)") }
        let candidates = try invocation.values("candidate", as: Endpoint.self)
        guard !candidates.isEmpty else { throw invocation.usageError("missing --candidate IP:PORT") }
        let session = UInt64(try invocation.value("session", as: Int.self) ?? 1)
        let packets = try invocation.value("packets", as: Int.self) ?? 5
        let interval = try invocation.value("interval-ms", as: Int.self) ?? 100
        let ackTimeout = try invocation.value("ack-timeout-ms", as: Int.self) ?? 2000
        let bursts = try invocation.value("bursts", as: Int.self) ?? 2
        guard (1...100).contains(packets), (1...10_000).contains(interval), (1...60_000).contains(ackTimeout),
              (1...100).contains(bursts) else {
            throw invocation.usageError("--packets 1…100, --interval-ms 1…10000, --ack-timeout-ms 1…60000, --bursts 1…100")
        }

        // Swift strings cannot be wiped; the key itself is, once used.
        let text = try failing { () throws(WGCommand.FileError) in try WGCommand.readFile(keyFile) }
        guard let keyText = text.utf8.split(whereSeparator: { $0.isASCIISpace }).first,
              var privateKey = Key(base64: String(decoding: keyText, as: UTF8.self)) else {
            throw CommandError("\(keyFile): not a base64 WireGuard private key", exitCode: .dataError)
        }
        defer { privateKey.wipe() }
        guard let pairKey = PairKey(localPrivateKey: privateKey.bytes, localPublicKey: privateKey.publicKey.bytes,
                                    remotePublicKey: peer.bytes) else {
            throw invocation.usageError("--peer is not a usable public key (a low-order point)")
        }
        let socket = try failing { () throws(SystemError) in try openPortSocket(port: port) }
        if let startAt = try invocation.value("start-at", as: Int64.self) {
            let wait = startAt - WallClock.milliseconds()
            guard wait <= 60_000 else { throw invocation.usageError("--start-at is more than a minute away") }
            if wait > 0 { usleep(UInt32(wait) * 1000) }
        }

        var punch = PunchSession(key: pairKey, session: session, candidates: candidates)
        let start = MonotonicTime.now()
        var burstsSent = 0
        func execute(_ effects: [PunchSession.Effect]) {
            for case .send(let bytes, let destination) in effects {
                _ = try? socket.send(bytes, to: destination)   // an unreachable candidate is not fatal
            }
        }
        /// Receives and answers until `deadline` (or until the pin, when `untilPinned`).
        func listen(until deadline: Duration, untilPinned: Bool = true) throws(SystemError) {
            while !untilPinned || punch.pinned == nil {
                let left = deadline - MonotonicTime.now()
                if left <= .zero { return }
                _ = try Readiness.readable([socket.descriptor], timeout: left)
                while let datagram = try socket.receive() { execute(punch.receive(datagram.payload, from: datagram.source)) }
            }
        }
        let elapsed = try failing { () throws(SystemError) -> Duration in
            attempts: for _ in 0..<bursts {
                burstsSent += 1
                for packet in 0..<packets {
                    execute(punch.burst())
                    let wait = packet == packets - 1 ? Duration.milliseconds(ackTimeout) : .milliseconds(interval)
                    try listen(until: MonotonicTime.now() + wait)
                    if punch.pinned != nil { break attempts }
                }
            }
            let elapsed = MonotonicTime.now() - start
            // Answer the peer's PUNCHes until its next burst has come, so that it can pin us too: our
            // answer to its last one may have been lost, or it may not have read it yet.
            if punch.pinned != nil {
                try listen(until: MonotonicTime.now() + .milliseconds(ackTimeout + interval * packets), untilPinned: false)
            }
            return elapsed
        }
        return report(punch, peer: peer, elapsed: elapsed, bursts: burstsSent, json: invocation.flag("json"))
    }

    private static func report(_ punch: PunchSession, peer: Key, elapsed: Duration, bursts: Int, json: Bool) -> ExitCode {
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000
        if json {
            StandardStreams.out(JSON.object([
                ("peer", .string(peer.base64)),
                ("pinned", punch.pinned.map { .string($0.description) } ?? .null),
                ("elapsed_ms", .double((milliseconds * 100).rounded() / 100)),
                ("bursts", .int(Int64(bursts))),
                ("refused", .int(Int64(punch.refused.values.reduce(0, +)))),
            ]).rendered(pretty: true) + "\n")
        } else if let pinned = punch.pinned {
            StandardStreams.out("pinned \(pinned) after \((milliseconds * 100).rounded() / 100) ms (\(bursts) burst\(bursts == 1 ? "" : "s"))\n")
        }
        guard punch.pinned != nil else {
            StandardStreams.error("lanrage: no direct path to \(peer.base64) after \(bursts) bursts\n")
            return .failure
        }
        return .success
    }
}
