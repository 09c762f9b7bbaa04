import CNetlink
import Net
import CLinux

/// The kernel module over generic netlink (family `wireguard`), built with libnl-genl:
/// `WG_CMD_GET_DEVICE` dumps reassembled into one device, `WG_CMD_SET_DEVICE` split across as
/// many messages as the peers need (as wireguard-tools does). The link itself goes over rtnetlink.
public final class NetlinkBackend: WireGuardBackend {
    public let kind = BackendKind.netlink
    private let socket: NetlinkSocket
    /// The generic netlink family id the kernel gave `wireguard`.
    public let family: Int32

    /// Connects and resolves the `wireguard` family; `.unavailable` when the module is absent.
    public init() throws(WireGuardError) {
        socket = try NetlinkSocket(protocol: NETLINK_GENERIC)
        let family = genl_ctrl_resolve(socket.handle, WG_GENL_NAME)
        guard family >= 0 else {
            throw WireGuardError(.unavailable, """
                the kernel has no WireGuard module (generic netlink family '\(WG_GENL_NAME)': \(String(cString: nl_geterror(family)))); \
                load it with 'modprobe wireguard', or use wireguard-go: Backend = uapi in agent.conf, --backend uapi for 'lanrage wg'
                """)
        }
        self.family = family
    }

    /// Whether the kernel knows the `wireguard` family (asking may autoload the module).
    public static func kernelModuleAvailable() -> Bool {
        guard let socket = try? NetlinkSocket(protocol: NETLINK_GENERIC) else { return false }
        return genl_ctrl_resolve(socket.handle, WG_GENL_NAME) >= 0
    }

    public func interfaceNames() throws(WireGuardError) -> [String] {
        try RouteNetlink.links(kind: "wireguard").sorted()
    }

    public func beginCreatingInterface(named name: String) throws(WireGuardError) -> InterfaceCreation {
        try RouteNetlink.createLink(name, kind: "wireguard")
        return .ready
    }

    public func deleteInterface(named name: String) throws(WireGuardError) {
        try RouteNetlink.deleteLink(name)
    }

    public func device(named name: String) throws(WireGuardError) -> Device {
        try NetlinkSocket.retryingInterruptedDumps { () throws(WireGuardError) -> Device in
            try InterfaceName.validate(name)
            guard let message = nlmsg_alloc() else { throw WireGuardError(.failed, "nlmsg_alloc failed") }
            guard genlmsg_put(message, UInt32(NL_AUTO_PORT), UInt32(NL_AUTO_SEQ), family, 0, NLM_F_DUMP,
                              UInt8(WG_CMD_GET_DEVICE.rawValue), UInt8(WG_GENL_VERSION)) != nil,
                  nla_put_string(message, Int32(WGDEVICE_A_IFNAME.rawValue), name) == 0
            else {
                nlmsg_free(message)
                throw WireGuardError(.failed, "cannot build WG_CMD_GET_DEVICE")
            }
            var reassembler = WireGuardNetlink.DumpReassembler(name: name)
            var parseError: WireGuardError?
            do throws(WireGuardError) {
                try socket.dump(message, "read WireGuard interface \(name)") { header in
                    do throws(WireGuardError) { try reassembler.add(header) } catch { parseError = parseError ?? error }
                }
            } catch where error.kind == .notFound {
                throw WireGuardError(.notFound, "no WireGuard interface named \(name) (\(error.message))")
            }
            if let parseError { throw parseError }
            return reassembler.device
        }
    }

    public func configure(_ name: String, _ change: DeviceChange) throws(WireGuardError) {
        try InterfaceName.validate(name)
        let messages = try WireGuardNetlink.setMessages(family: family, name: name, change: change)
        var remaining = messages[...]
        defer { remaining.forEach { nlmsg_free($0) } }
        while let message = remaining.popFirst() {
            do throws(WireGuardError) {
                try socket.request(message, "configure WireGuard interface \(name)")
            } catch where error.kind == .notFound {
                throw WireGuardError(.notFound, "no WireGuard interface named \(name)")
            }
        }
    }
}

/// Building and parsing WireGuard generic netlink messages, without I/O (tested on its own).
public enum WireGuardNetlink {
    /// wireguard-tools sizes its messages to a page (MNL_SOCKET_BUFFER_SIZE).
    public static let defaultMessageSize = 4096

    /// The `WG_CMD_SET_DEVICE` messages for `change`, each at most `messageSize` bytes. The device
    /// attributes and `WGDEVICE_F_REPLACE_PEERS` go in the first; a peer that does not fit starts the next;
    /// a peer whose allowed IPs do not fit continues in the next message with its public key and the rest
    /// of its allowed IPs. Every returned message must be sent (or freed) by the caller, in order.
    public static func setMessages(family: Int32, name: String, change: DeviceChange,
                                   messageSize: Int = defaultMessageSize) throws(WireGuardError) -> [OpaquePointer] {
        var messages: [OpaquePointer] = []
        func fail(_ text: String) -> WireGuardError {
            messages.forEach { nlmsg_free($0) }
            return WireGuardError(.failed, text)
        }
        var peerIndex = 0
        var allowedIndex = 0
        // Whether the current peer's flags, key, endpoint and keepalive went out in an earlier message.
        var headerSent = false
        var first = true
        // Every message either finishes or makes progress (else we throw); bound the loop anyway.
        let bound = change.peers.count + change.peers.reduce(0) { $0 + $1.allowedIPs.count } + 2
        for _ in 0..<bound {
            guard let message = nlmsg_alloc_size(messageSize) else { throw fail("nlmsg_alloc failed") }
            messages.append(message)
            guard genlmsg_put(message, UInt32(NL_AUTO_PORT), UInt32(NL_AUTO_SEQ), family, 0, 0,
                              UInt8(WG_CMD_SET_DEVICE.rawValue), UInt8(WG_GENL_VERSION)) != nil,
                  nla_put_string(message, Int32(WGDEVICE_A_IFNAME.rawValue), name) == 0
            else { throw fail("netlink message size \(messageSize) too small") }
            if first {
                var ok = true
                if let key = change.privateKey {
                    ok = ok && key.withUnsafeBytes { nla_put(message, Int32(WGDEVICE_A_PRIVATE_KEY.rawValue), Int32(Key.byteCount), $0.baseAddress) } == 0
                }
                if let port = change.listenPort { ok = ok && nla_put_u16(message, Int32(WGDEVICE_A_LISTEN_PORT.rawValue), port) == 0 }
                if let mark = change.fwmark { ok = ok && nla_put_u32(message, Int32(WGDEVICE_A_FWMARK.rawValue), mark) == 0 }
                if change.replacePeers {
                    ok = ok && nla_put_u32(message, Int32(WGDEVICE_A_FLAGS.rawValue), WGDEVICE_F_REPLACE_PEERS.rawValue) == 0
                }
                guard ok else { throw fail("netlink message size \(messageSize) too small for the device attributes") }
                first = false
            }
            var progress = false
            if peerIndex < change.peers.count, let peers = nla_nest_start(message, Int32(WGDEVICE_A_PEERS.rawValue)) {
                peerLoop: while peerIndex < change.peers.count {
                    let peer = change.peers[peerIndex]
                    guard let peerNest = nla_nest_start(message, 0) else { break }
                    var ok = nla_put(message, Int32(WGPEER_A_PUBLIC_KEY.rawValue), Int32(Key.byteCount), peer.publicKey.bytes) == 0
                    let headerHere = !headerSent
                    if ok && headerHere {
                        var flags: UInt32 = 0
                        if peer.remove { flags |= WGPEER_F_REMOVE_ME.rawValue }
                        if peer.updateOnly { flags |= WGPEER_F_UPDATE_ONLY.rawValue }
                        if peer.replaceAllowedIPs { flags |= WGPEER_F_REPLACE_ALLOWEDIPS.rawValue }
                        if flags != 0 { ok = ok && nla_put_u32(message, Int32(WGPEER_A_FLAGS.rawValue), flags) == 0 }
                        if !peer.remove {
                            if let psk = peer.presharedKey {
                                ok = ok && psk.withUnsafeBytes { nla_put(message, Int32(WGPEER_A_PRESHARED_KEY.rawValue), Int32(Key.byteCount), $0.baseAddress) } == 0
                            }
                            if let endpoint = peer.endpoint {
                                ok = ok && endpoint.withSockAddr { address, length in
                                    nla_put(message, Int32(WGPEER_A_ENDPOINT.rawValue), Int32(length), address) == 0
                                }
                            }
                            if let keepalive = peer.persistentKeepalive {
                                ok = ok && nla_put_u16(message, Int32(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL.rawValue), keepalive) == 0
                            }
                        }
                    }
                    guard ok else {
                        nla_nest_cancel(message, peerNest)
                        break peerLoop
                    }
                    let allowed = peer.remove ? [] : peer.allowedIPs
                    if allowedIndex < allowed.count {
                        let before = allowedIndex
                        if let allowedNest = nla_nest_start(message, Int32(WGPEER_A_ALLOWEDIPS.rawValue)) {
                            while allowedIndex < allowed.count {
                                let prefix = allowed[allowedIndex]
                                guard let one = nla_nest_start(message, 0) else { break }
                                let bytes = prefix.address.bytes
                                guard nla_put_u16(message, Int32(WGALLOWEDIP_A_FAMILY.rawValue), UInt16(prefix.address.family)) == 0,
                                      nla_put(message, Int32(WGALLOWEDIP_A_IPADDR.rawValue), Int32(bytes.count), bytes) == 0,
                                      nla_put_u8(message, Int32(WGALLOWEDIP_A_CIDR_MASK.rawValue), prefix.length) == 0
                                else {
                                    nla_nest_cancel(message, one)
                                    break
                                }
                                nla_nest_end(message, one)
                                allowedIndex += 1
                            }
                            if allowedIndex > before { nla_nest_end(message, allowedNest) } else { nla_nest_cancel(message, allowedNest) }
                        }
                        if allowedIndex < allowed.count {
                            // Continue this peer in the next message (its public key and the rest of its allowed IPs).
                            if allowedIndex > before || headerHere {
                                nla_nest_end(message, peerNest)
                                headerSent = true
                                progress = true
                            } else {
                                nla_nest_cancel(message, peerNest)
                            }
                            break peerLoop
                        }
                    }
                    nla_nest_end(message, peerNest)
                    progress = true
                    peerIndex += 1
                    allowedIndex = 0
                    headerSent = false
                }
                nla_nest_end(message, peers)
            }
            if peerIndex >= change.peers.count { return messages }
            if !progress { throw fail("a peer does not fit in a \(messageSize)-byte netlink message") }
        }
        throw fail("splitting the peers into netlink messages did not converge")
    }
}

extension WireGuardNetlink {
    /// Reassembles the messages of a `WG_CMD_GET_DEVICE` dump into one device: the first message
    /// carries the device attributes; a peer whose allowed IPs did not fit is repeated at the start of
    /// the next message with the same public key and the rest of its allowed IPs.
    public struct DumpReassembler {
        public private(set) var device: Device
        public private(set) var messageCount = 0

        public init(name: String) { device = Device(name: name) }

        /// Adds one message of the dump (a `nlmsghdr` followed by its generic netlink header and attributes).
        public mutating func add(_ header: UnsafeMutablePointer<nlmsghdr>) throws(WireGuardError) {
            messageCount += 1
            var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: Int(WGDEVICE_A_MAX_) + 1)
            let status = genlmsg_parse(header, 0, &table, WGDEVICE_A_MAX_, nil)
            guard status == 0 else { throw NetlinkSocket.error(status, "parse WG_CMD_GET_DEVICE reply") }
            func attribute(_ type: wgdevice_attribute) -> UnsafeMutablePointer<nlattr>? { table[Int(type.rawValue)] }
            if let name = attribute(WGDEVICE_A_IFNAME) { device.name = Attributes.string(name) }
            if let key = attribute(WGDEVICE_A_PRIVATE_KEY), let parsed = Key(bytes: Attributes.bytes(key)), !parsed.isZero {
                device.privateKey = parsed
            }
            if let key = attribute(WGDEVICE_A_PUBLIC_KEY), let parsed = Key(bytes: Attributes.bytes(key)), !parsed.isZero {
                device.publicKey = parsed
            }
            if let port = attribute(WGDEVICE_A_LISTEN_PORT), nla_len(port) >= 2 { device.listenPort = nla_get_u16(port) }
            if let mark = attribute(WGDEVICE_A_FWMARK), nla_len(mark) >= 4 { device.fwmark = nla_get_u32(mark) }
            guard let peers = attribute(WGDEVICE_A_PEERS) else { return }
            for peerAttribute in Attributes.nested(peers) {
                let peerTable = Attributes.table(peerAttribute, maximum: WGPEER_A_MAX_)
                func peerAttr(_ type: wgpeer_attribute) -> UnsafeMutablePointer<nlattr>? { peerTable[Int(type.rawValue)] }
                guard let keyAttribute = peerAttr(WGPEER_A_PUBLIC_KEY), let publicKey = Key(bytes: Attributes.bytes(keyAttribute)) else {
                    throw WireGuardError(.failed, "WG_CMD_GET_DEVICE reply has a peer without a valid public key")
                }
                var peer: Peer
                let continued = device.peers.last?.publicKey == publicKey
                if continued { peer = device.peers.removeLast() } else { peer = Peer(publicKey: publicKey) }
                if let psk = peerAttr(WGPEER_A_PRESHARED_KEY), let parsed = Key(bytes: Attributes.bytes(psk)), !parsed.isZero {
                    peer.presharedKey = parsed
                }
                if let endpoint = peerAttr(WGPEER_A_ENDPOINT) { peer.endpoint = Self.endpoint(Attributes.bytes(endpoint)) }
                if let keepalive = peerAttr(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL), nla_len(keepalive) >= 2 {
                    peer.persistentKeepalive = nla_get_u16(keepalive)
                }
                if let time = peerAttr(WGPEER_A_LAST_HANDSHAKE_TIME), nla_len(time) >= 16 {
                    let bytes = Attributes.bytes(time)
                    let seconds = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: Int64.self) }
                    let nanoseconds = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: Int64.self) }
                    peer.lastHandshake = seconds == 0 && nanoseconds == 0 ? nil : Timestamp(seconds: seconds, nanoseconds: nanoseconds)
                }
                if let rx = peerAttr(WGPEER_A_RX_BYTES), nla_len(rx) >= 8 { peer.rxBytes = nla_get_u64(rx) }
                if let tx = peerAttr(WGPEER_A_TX_BYTES), nla_len(tx) >= 8 { peer.txBytes = nla_get_u64(tx) }
                if let version = peerAttr(WGPEER_A_PROTOCOL_VERSION), nla_len(version) >= 4 { peer.protocolVersion = nla_get_u32(version) }
                if let allowed = peerAttr(WGPEER_A_ALLOWEDIPS) {
                    for one in Attributes.nested(allowed) {
                        let ipTable = Attributes.table(one, maximum: WGALLOWEDIP_A_MAX_)
                        guard let family = ipTable[Int(WGALLOWEDIP_A_FAMILY.rawValue)],
                              let address = ipTable[Int(WGALLOWEDIP_A_IPADDR.rawValue)],
                              let mask = ipTable[Int(WGALLOWEDIP_A_CIDR_MASK.rawValue)]
                        else { continue }
                        let familyValue = Int32(nla_get_u16(family))
                        let bytes = Attributes.bytes(address)
                        let count = familyValue == AF_INET ? 4 : familyValue == AF_INET6 ? 16 : 0
                        guard count > 0, bytes.count >= count, let ip = IPAddress(bytes: bytes.prefix(count)),
                              let prefix = IPPrefix(ip, nla_get_u8(mask))
                        else { continue }
                        peer.allowedIPs.append(prefix)
                    }
                }
                device.peers.append(peer)
            }
        }

        static func endpoint(_ bytes: [UInt8]) -> Endpoint? {
            guard bytes.count >= 2 else { return nil }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes.prefix(MemoryLayout<sockaddr_storage>.size)) }
            return Endpoint(storage)
        }
    }

    // The *_MAX macros do not import.
    static let WGDEVICE_A_MAX_ = Int32(__WGDEVICE_A_LAST.rawValue) - 1
    static let WGPEER_A_MAX_ = Int32(__WGPEER_A_LAST.rawValue) - 1
    static let WGALLOWEDIP_A_MAX_ = Int32(__WGALLOWEDIP_A_LAST.rawValue) - 1
}
