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
}
