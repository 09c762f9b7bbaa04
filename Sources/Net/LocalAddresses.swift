import CLinux

/// The addresses configured on this host's interfaces (in the current network namespace).
public enum LocalAddresses {
    /// Every address; with `reachableOnly`, only those of interfaces that are up and neither
    /// loopback nor point-to-point (WireGuard and other tunnels are point-to-point: a peer reached
    /// through another tunnel is not a path of its own).
    public static func all(reachableOnly: Bool = false) throws(SystemError) -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { throw SystemError("getifaddrs", "local interfaces") }
        defer { freeifaddrs(list) }
        var addresses: [IPAddress] = []
        var cursor = list
        while let entry = cursor {
            let flags = Int32(bitPattern: entry.pointee.ifa_flags)
            let skipped = reachableOnly
                && (flags & Int32(IFF_UP) == 0 || flags & Int32(IFF_LOOPBACK | IFF_POINTOPOINT) != 0)
            if !skipped, let address = entry.pointee.ifa_addr {
                let family = Int32(address.pointee.sa_family)
                if family == AF_INET || family == AF_INET6 {
                    var storage = sockaddr_storage()
                    let size = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                    withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: size)) }
                    if let endpoint = Endpoint(storage) { addresses.append(endpoint.address) }
                }
            }
            cursor = entry.pointee.ifa_next
        }
        return addresses
    }

    /// The address the kernel sends from toward `destination`: `probe` (a UDP socket of the
    /// destination's family) is connected there, which sends nothing, and asked its name.
    public static func source(toward destination: Endpoint, probe: Int32) -> IPAddress? {
        let target = Endpoint(destination.address, destination.port == 0 ? 9 : destination.port)
        guard target.withSockAddr({ connect(probe, $0, $1) }) == 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &length) }
        }
        return named == 0 ? Endpoint(storage)?.address : nil
    }

    /// The IPv4 default route's gateway, from `/proc/net/route` (nil without one). The file prints
    /// each address as the hexadecimal of its 32 bits read in host order: their bytes in memory
    /// are the address's.
    public static func defaultGateway() -> IPv4Address? {
        guard let text = SmallFile.read("/proc/net/route") else { return nil }
        for line in text.split(separator: UInt8(ascii: "\n")).dropFirst() {
            let fields = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
            guard fields.count > 3, fields[1].elementsEqual("00000000".utf8),
                  let flags = UInt32(String(decoding: fields[3], as: UTF8.self), radix: 16), flags & 0x3 == 0x3,
                  let value = UInt32(String(decoding: fields[2], as: UTF8.self), radix: 16) else { continue }
            let bytes = withUnsafeBytes(of: value) { Array($0) }
            return IPv4Address(bytes[0], bytes[1], bytes[2], bytes[3])
        }
        return nil
    }
}
