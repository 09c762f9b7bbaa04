import CLinux

/// The MTU of the path the kernel would take toward a destination: the route's MTU, or that of
/// the link it leaves by (read with `IP_MTU` / `IPV6_MTU` on a connected UDP socket; nothing is sent).
public enum PathMTU {
    /// The path MTU toward `destination`; nil when there is no route or the kernel does not say.
    public static func toward(_ destination: Endpoint) -> Int? {
        let family = destination.address.family
        let fd = socket(family, lanrage_sock_dgram | lanrage_sock_cloexec, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let connected = destination.withSockAddr { address, length in connect(fd, address, length) }
        guard connected == 0 else { return nil }
        var mtu: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        let level = family == AF_INET ? Int32(IPPROTO_IP) : Int32(IPPROTO_IPV6)
        let option = family == AF_INET ? IP_MTU : IPV6_MTU
        guard getsockopt(fd, level, option, &mtu, &size) == 0, mtu > 0 else { return nil }
        return Int(mtu)
    }
}
