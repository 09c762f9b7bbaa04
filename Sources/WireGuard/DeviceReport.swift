import Net

/// `wg show`-style text for a device. Private and preshared keys are never printed: "(hidden)".
public enum DeviceReport {
    /// The text `wg show` prints for `device`, with handshake ages relative to `now` (Unix seconds).
    public static func text(_ device: Device, now: Int64) -> String {
        var lines = ["interface: \(device.name)"]
        if let publicKey = device.publicKey { lines.append("  public key: \(publicKey.base64)") }
        if device.privateKey != nil { lines.append("  private key: (hidden)") }
        if device.listenPort != 0 { lines.append("  listening port: \(device.listenPort)") }
        if device.fwmark != 0 { lines.append("  fwmark: 0x\(String(device.fwmark, radix: 16))") }
        for peer in device.peers {
            lines.append("")
            lines.append("peer: \(peer.publicKey.base64)")
            if peer.presharedKey != nil { lines.append("  preshared key: (hidden)") }
            if let endpoint = peer.endpoint { lines.append("  endpoint: \(endpoint)") }
            lines.append("  allowed ips: \(peer.allowedIPs.isEmpty ? "(none)" : peer.allowedIPs.map { $0.description }.joined(separator: ", "))")
            if let handshake = peer.lastHandshake { lines.append("  latest handshake: \(ago(now - handshake.seconds))") }
            if peer.rxBytes != 0 || peer.txBytes != 0 {
                lines.append("  transfer: \(bytes(peer.rxBytes)) received, \(bytes(peer.txBytes)) sent")
            }
            if peer.persistentKeepalive != 0 { lines.append("  persistent keepalive: every \(duration(Int64(peer.persistentKeepalive)))") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// "1 minute, 5 seconds ago", "Now" — as `wg` words it.
    public static func ago(_ seconds: Int64) -> String {
        seconds <= 0 ? "Now" : duration(seconds) + " ago"
    }

    /// "2 hours, 1 second".
    public static func duration(_ total: Int64) -> String {
        let units: [(Int64, String)] = [(365 * 86400, "year"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")]
        var left = total
        var parts: [String] = []
        for (size, name) in units where left >= size {
            let count = left / size
            left %= size
            parts.append("\(count) \(name)\(count == 1 ? "" : "s")")
        }
        return parts.isEmpty ? "0 seconds" : parts.joined(separator: ", ")
    }

    /// "92 B", "1.23 KiB", "4.00 MiB".
    public static func bytes(_ count: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard count >= 1024 else { return "\(count) B" }
        var unit = 0
        var scale: UInt64 = 1024
        while unit < units.count - 1, count >= scale * 1024 { scale *= 1024; unit += 1 }
        let hundredths = (count * 100 + scale / 2) / scale
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) \(units[unit])"
    }
}
