import CLinux
import Net

/// The UAPI text protocol, without I/O (tested on its own).
public enum UAPIProtocol {
    /// The `set=1` request for `change`, ending with the blank line.
    public static func setRequest(_ change: DeviceChange) -> String {
        var lines = ["set=1"]
        // The order of the kernel's set_device: what can fail (the port) before what changes state,
        // so a refused port leaves the device as it was.
        if let mark = change.fwmark { lines.append("fwmark=\(mark)") }
        if let port = change.listenPort { lines.append("listen_port=\(port)") }
        if change.replacePeers { lines.append("replace_peers=true") }
        if let key = change.privateKey { lines.append("private_key=\(key.hex)") }
        for peer in change.peers {
            lines.append("public_key=\(peer.publicKey.hex)")
            if peer.remove {
                lines.append("remove=true")
                continue
            }
            if peer.updateOnly { lines.append("update_only=true") }
            if let psk = peer.presharedKey { lines.append("preshared_key=\(psk.hex)") }
            if let endpoint = peer.endpoint { lines.append("endpoint=\(endpoint)") }
            if let keepalive = peer.persistentKeepalive { lines.append("persistent_keepalive_interval=\(keepalive)") }
            if peer.replaceAllowedIPs { lines.append("replace_allowed_ips=true") }
            for prefix in peer.allowedIPs { lines.append("allowed_ip=\(prefix)") }
        }
        return lines.joined(separator: "\n") + "\n\n"
    }

    /// Checks the `errno=N` reply of a set.
    public static func checkSetReply(_ reply: String, name: String) throws(WireGuardError) {
        let code = try errnoValue(reply, name: name)
        guard code == 0 else {
            // wireguard-go answers negative errno values.
            let number = code < 0 ? -code : code
            var text = "userspace WireGuard \(name) refused the configuration: \(String(cString: strerror(number))) (errno=\(code))"
            if number == EADDRINUSE { text += "; another process holds the listen port — choose another ListenPort" }
            throw WireGuardError(number == EPERM || number == EACCES ? .permission : .failed, text)
        }
    }

    /// Parses the reply to `get=1` into a device.
    public static func parseGet(_ reply: String, name: String) throws(WireGuardError) -> Device {
        try parseGet(Array(reply.utf8), name: name)
    }

    /// Parses the reply to `get=1` (bytes: a 1,000-peer reply is parsed line by line without
    /// building Characters) into a device.
    public static func parseGet(_ reply: [UInt8], name: String) throws(WireGuardError) -> Device {
        var device = Device(name: name)
        var peer: Peer?
        var handshakeSeconds: Int64 = 0, handshakeNanoseconds: Int64 = 0
        var code: Int32?
        func finishPeer() {
            guard var done = peer else { return }
            if handshakeSeconds != 0 || handshakeNanoseconds != 0 {
                done.lastHandshake = Timestamp(seconds: handshakeSeconds, nanoseconds: handshakeNanoseconds)
            }
            device.peers.append(done)
            peer = nil
            handshakeSeconds = 0
            handshakeNanoseconds = 0
        }
        var lineStart = 0
        while lineStart < reply.count {
            var lineEnd = lineStart
            while lineEnd < reply.count, reply[lineEnd] != 10 { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            guard let equals = reply[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: "=")) else { continue }
            let keyBytes = reply[lineStart..<equals]
            let valueBytes = reply[(equals + 1)..<lineEnd]
            let key = String(decoding: keyBytes, as: UTF8.self)
            func bad() -> WireGuardError { WireGuardError(.failed, "userspace WireGuard \(name) sent a malformed line: \(key)=…") }
            func text() -> String { String(decoding: valueBytes, as: UTF8.self) }
            switch key {
            case "errno":
                guard let value = Int32(text()) else { throw bad() }
                code = value
            case "private_key":
                guard var parsed = Key(hexBytes: valueBytes) else { throw bad() }
                if !parsed.isZero {
                    device.privateKey = parsed
                    device.publicKey = parsed.publicKey
                }
                parsed.wipe()
            case "listen_port":
                guard let port = UInt16(text()) else { throw bad() }
                device.listenPort = port
            case "fwmark":
                guard let mark = UInt32(text()) else { throw bad() }
                device.fwmark = mark
            case "public_key":
                finishPeer()
                guard let parsed = Key(hexBytes: valueBytes) else { throw bad() }
                peer = Peer(publicKey: parsed)
            case "preshared_key":
                guard let parsed = Key(hexBytes: valueBytes) else { throw bad() }
                if !parsed.isZero { peer?.presharedKey = parsed }
            case "endpoint":
                guard let endpoint = Endpoint(text()) else { throw bad() }
                peer?.endpoint = endpoint
            case "persistent_keepalive_interval":
                guard let seconds = UInt16(text()) else { throw bad() }
                peer?.persistentKeepalive = seconds
            case "allowed_ip":
                guard let prefix = IPPrefix(text()) else { throw bad() }
                peer?.allowedIPs.append(prefix)
            case "last_handshake_time_sec":
                guard let seconds = Int64(text()) else { throw bad() }
                handshakeSeconds = seconds
            case "last_handshake_time_nsec":
                guard let nanoseconds = Int64(text()) else { throw bad() }
                handshakeNanoseconds = nanoseconds
            case "rx_bytes":
                guard let count = UInt64(text()) else { throw bad() }
                peer?.rxBytes = count
            case "tx_bytes":
                guard let count = UInt64(text()) else { throw bad() }
                peer?.txBytes = count
            case "protocol_version":
                guard let version = UInt32(text()) else { throw bad() }
                peer?.protocolVersion = version
            default:
                continue
            }
        }
        finishPeer()
        guard let code else {
            throw WireGuardError(.failed, "userspace WireGuard \(name) closed the UAPI socket without an errno= line")
        }
        guard code == 0 else {
            throw WireGuardError(.failed, "userspace WireGuard \(name) answered get with errno=\(code) (\(String(cString: strerror(code))))")
        }
        return device
    }

    private static func errnoValue(_ reply: String, name: String) throws(WireGuardError) -> Int32 {
        guard let line = reply.split(separator: "\n").last(where: { $0.hasPrefix("errno=") }),
              let code = Int32(line.dropFirst(6))
        else {
            throw WireGuardError(.failed, "userspace WireGuard \(name) closed the UAPI socket without an errno= line")
        }
        return code
    }
}
