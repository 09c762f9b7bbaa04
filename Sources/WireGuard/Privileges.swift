import CLinux

/// Checking for CAP_NET_ADMIN before changing anything, so the error is clear and nothing is half done.
public enum Privileges {
    /// Whether the effective capability set holds CAP_NET_ADMIN (bit 12 of CapEff).
    public static func hasNetAdmin() -> Bool {
        guard let file = fopen("/proc/self/status", "r") else { return geteuid() == 0 }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 512)
        for _ in 0..<200 {
            guard fgets(&buffer, Int32(buffer.count), file) != nil else { break }
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard line.hasPrefix("CapEff:") else { continue }
            let hex = line.dropFirst(7).trimmingSpaces.filter { $0 != "\n" }
            guard let mask = UInt64(hex, radix: 16) else { return geteuid() == 0 }
            return mask & (1 << 12) != 0
        }
        return geteuid() == 0
    }

    public static func requireNetAdmin(_ what: String) throws(WireGuardError) {
        guard hasNetAdmin() else {
            throw WireGuardError(.permission, "cannot \(what): CAP_NET_ADMIN is missing (run as root or grant CAP_NET_ADMIN); nothing was changed")
        }
    }
}
