import Net
import CLinux

/// Which implementation talks to WireGuard.
public enum BackendKind: String, Sendable, CaseIterable {
    /// The kernel module, over generic netlink (libnl).
    case netlink
    /// A userspace WireGuard (wireguard-go), over its UAPI socket.
    case uapi
}

extension BackendKind: CustomStringConvertible {
    /// The raw value, as logs and status show it.
    public var description: String { rawValue }
}

/// One protocol, two implementations: `NetlinkBackend` (kernel) and `UAPIBackend` (wireguard-go).
/// Links, addresses and routes go over rtnetlink for both (`RouteNetlink`).
public protocol WireGuardBackend: AnyObject {
    var kind: BackendKind { get }
    /// The WireGuard interfaces this backend sees, sorted.
    func interfaceNames() throws(WireGuardError) -> [String]
    /// Starts creating the interface (fails with `.exists` when a link of that name exists) and returns
    /// what waits until it can be configured: the kernel's is ready at once, wireguard-go starts in the
    /// background while the caller goes on (the agent sends its first packets meanwhile).
    func beginCreatingInterface(named name: String) throws(WireGuardError) -> InterfaceCreation
    func deleteInterface(named name: String) throws(WireGuardError)
    /// Reads the device with its peers and counters.
    func device(named name: String) throws(WireGuardError) -> Device
    /// Applies a change in as few operations as the backend allows.
    func configure(_ name: String, _ change: DeviceChange) throws(WireGuardError)

    // The single operations below have one implementation each (the extension); they are
    // requirements so that calls through `any WireGuardBackend` dispatch by witness table, which
    // Embedded Swift needs (it cannot open an existential into an unspecialized generic).
    func createInterface(named name: String) throws(WireGuardError)
    func setPeer(_ name: String, _ peer: PeerChange) throws(WireGuardError)
    func removePeer(_ name: String, _ publicKey: Key) throws(WireGuardError)
    func setAddresses(_ name: String, _ addresses: [IPPrefix]) throws(WireGuardError)
    func addRoute(_ name: String, _ prefix: IPPrefix) throws(WireGuardError)
    func removeRoute(_ name: String, _ prefix: IPPrefix) throws(WireGuardError)
    func setLinkUp(_ name: String, _ up: Bool) throws(WireGuardError)
    func setMTU(_ name: String, _ mtu: Int) throws(WireGuardError)
}

/// Choosing a backend: the kernel module when its generic netlink family exists, else userspace.
public enum Backends {
    /// The backend to use: `forced` when given; else netlink when the kernel knows the `wireguard`
    /// family; else UAPI when `wireguard-go` is installed or a UAPI socket exists.
    /// With an interface name, a userspace interface of that name (its UAPI socket exists) wins, as
    /// wireguard-tools does, so wireguard-go interfaces work on a kernel that also has the module.
    public static func select(_ forced: BackendKind? = nil, interface name: String? = nil) throws(WireGuardError) -> any WireGuardBackend {
        switch forced {
        case .netlink: return try NetlinkBackend()
        case .uapi: return UAPIBackend()
        case nil:
            if let name {
                let uapi = UAPIBackend()
                var info = stat()
                if stat(uapi.socketPath(name), &info) == 0, info.st_mode & mode_t(S_IFMT) == mode_t(S_IFSOCK), if_nametoindex(name) != 0 {
                    return uapi
                }
            }
            if NetlinkBackend.kernelModuleAvailable() { return try NetlinkBackend() }
            let uapi = UAPIBackend()
            if uapi.userspaceAvailable() { return uapi }
            throw WireGuardError(.unavailable, """
                no WireGuard available: the kernel has no 'wireguard' generic netlink family (modprobe wireguard) \
                and no userspace WireGuard is running or installed (apt-get install wireguard-go)
                """)
        }
    }
}

/// An interface being created; `wait()` returns once it can be configured, or names why it cannot.
public struct InterfaceCreation {
    private let process: BackgroundProcess?
    private let waitUntilReady: () throws(WireGuardError) -> Void

    init(process: BackgroundProcess? = nil, waitUntilReady: @escaping () throws(WireGuardError) -> Void) {
        self.process = process
        self.waitUntilReady = waitUntilReady
    }

    /// One that is ready already (the kernel's).
    static var ready: InterfaceCreation { InterfaceCreation {} }

    public func wait() throws(WireGuardError) { try waitUntilReady() }

    /// The program serving the interface (wireguard-go), nil for the kernel's.
    public var program: String? { process?.arguments.first }

    /// How that program exited, once it has (reaping it); nil while it runs, and for the kernel's.
    public func exitStatus() -> Int32? { process?.exitStatus() }
}

/// The single operations, in terms of `configure` (one change each) and rtnetlink (the overlay side,
/// the same for both backends: wireguard-go's TUN device is an ordinary link).
extension WireGuardBackend {
    /// Creates the interface and waits until it can be configured.
    public func createInterface(named name: String) throws(WireGuardError) {
        try beginCreatingInterface(named: name).wait()
    }

    /// Adds the peer, or updates it when it exists (`PeerChange.updateOnly` to never add).
    public func setPeer(_ name: String, _ peer: PeerChange) throws(WireGuardError) {
        try configure(name, DeviceChange(peers: [peer]))
    }

    public func removePeer(_ name: String, _ publicKey: Key) throws(WireGuardError) {
        try configure(name, DeviceChange(peers: [PeerChange(publicKey: publicKey, remove: true)]))
    }

    /// Makes the interface's addresses exactly `addresses`.
    public func setAddresses(_ name: String, _ addresses: [IPPrefix]) throws(WireGuardError) {
        try RouteNetlink.setAddresses(name, addresses)
    }

    public func addRoute(_ name: String, _ prefix: IPPrefix) throws(WireGuardError) {
        try RouteNetlink.addRoute(name, prefix)
    }

    public func removeRoute(_ name: String, _ prefix: IPPrefix) throws(WireGuardError) {
        try RouteNetlink.deleteRoute(name, prefix)
    }

    public func setLinkUp(_ name: String, _ up: Bool) throws(WireGuardError) {
        try RouteNetlink.setUp(name, up)
    }

    public func setMTU(_ name: String, _ mtu: Int) throws(WireGuardError) {
        try RouteNetlink.setMTU(name, mtu)
    }
}
