import CNetlink
import CSodium
import CLinux

/// A libnl socket for one netlink protocol (rtnetlink or generic netlink), freed when released.
/// Requests are acknowledged (`nl_send_sync`); dumps call a Swift closure per message.
final class NetlinkSocket {
    let handle: OpaquePointer

    init(protocol netlinkProtocol: Int32) throws(WireGuardError) {
        guard let socket = nl_socket_alloc() else { throw WireGuardError(.failed, "nl_socket_alloc failed (out of memory)") }
        let connected = netlinkProtocol == NETLINK_GENERIC ? genl_connect(socket) : nl_connect(socket, netlinkProtocol)
        guard connected == 0 else {
            nl_socket_free(socket)
            throw NetlinkSocket.error(connected, "connect to netlink")
        }
        handle = socket
        // Large dumps (1,000 peers) arrive in many messages; a bigger buffer avoids overruns.
        nl_socket_set_buffer_size(socket, 1 << 20, 1 << 20)
        nl_socket_set_msg_buf_size(socket, 32768)
    }

    deinit { nl_socket_free(handle) }

    /// Sends `message` (consumed: zeroed with `sodium_memzero`, as it may hold keys, then freed) and
    /// waits for the kernel's acknowledgement.
    func request(_ message: OpaquePointer, _ what: @autoclosure () -> String) throws(WireGuardError) {
        let sent = nl_send_auto(handle, message)
        let header = nlmsg_hdr(message)!
        sodium_memzero(header, Int(header.pointee.nlmsg_len))
        nlmsg_free(message)
        guard sent >= 0 else { throw NetlinkSocket.error(sent, what()) }
        let status = nl_wait_for_ack(handle)
        guard status >= 0 else { throw NetlinkSocket.error(status, what()) }
    }

    /// Sends a dump request (consumed) and calls `body` with every answer message's header, in order.
    func dump(_ message: OpaquePointer, _ what: @autoclosure () -> String,
              _ body: (UnsafeMutablePointer<nlmsghdr>) -> Void) throws(WireGuardError) {
        let sent = nl_send_auto(handle, message)
        nlmsg_free(message)
        guard sent >= 0 else { throw NetlinkSocket.error(sent, what()) }
        try withoutActuallyEscaping(body) { (escapable) throws(WireGuardError) in
            let box = CallbackBox(escapable)
            let context = Unmanaged.passUnretained(box).toOpaque()
            let callback: nl_recvmsg_msg_cb_t = { message, context in
                let box = Unmanaged<CallbackBox>.fromOpaque(context!).takeUnretainedValue()
                box.body(nlmsg_hdr(message))
                return Int32(NL_OK.rawValue)
            }
            guard let callbacks = nl_cb_clone(nl_socket_get_cb(handle)) else { throw WireGuardError(.failed, "nl_cb_clone failed") }
            defer { nl_cb_put(callbacks) }
            nl_cb_set(callbacks, NL_CB_VALID, NL_CB_CUSTOM, callback, context)
            let received = nl_recvmsgs(handle, callbacks)
            withExtendedLifetime(box) {}
            guard received >= 0 else { throw NetlinkSocket.error(received, what()) }
        }
    }

    /// Runs `body` again when the kernel interrupted a dump in it because the table changed
    /// meanwhile (an address or route added as a link comes up): iproute2 retries the same way.
    static func retryingInterruptedDumps<T>(attempts: Int = 5, _ body: () throws(WireGuardError) -> T) throws(WireGuardError) -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch where error.kind == .interrupted && attempt < attempts {
                attempt += 1
            }
        }
    }

    /// A netlink error as a WireGuardError of the right kind.
    static func error(_ code: Int32, _ what: String) -> WireGuardError {
        let reason = String(cString: nl_geterror(code))
        switch -code {
        case NLE_PERM:
            return WireGuardError(.permission, "\(what): \(reason) (run as root or grant CAP_NET_ADMIN)")
        case NLE_EXIST:
            return WireGuardError(.exists, "\(what): \(reason)")
        case NLE_NODEV, NLE_OBJ_NOTFOUND, NLE_OPNOTSUPP:
            return WireGuardError(.notFound, "\(what): \(reason)")
        case NLE_DUMP_INTR:
            return WireGuardError(.interrupted, "\(what): \(reason)")
        default:
            return WireGuardError(.failed, "\(what): \(reason)")
        }
    }
}

private final class CallbackBox {
    let body: (UnsafeMutablePointer<nlmsghdr>) -> Void
    init(_ body: @escaping (UnsafeMutablePointer<nlmsghdr>) -> Void) { self.body = body }
}

/// Reading netlink attributes without libnl's macros (`nla_for_each_nested` and friends).
enum Attributes {
    /// The attributes nested in `attribute`, in order.
    static func nested(_ attribute: UnsafeMutablePointer<nlattr>) -> [UnsafeMutablePointer<nlattr>] {
        var result: [UnsafeMutablePointer<nlattr>] = []
        var remaining = nla_len(attribute)
        var current: UnsafeMutablePointer<nlattr>? = nla_data(attribute).assumingMemoryBound(to: nlattr.self)
        var guardCount = 0
        while let attr = current, nla_ok(attr, remaining) != 0, guardCount < 1_000_000 {
            result.append(attr)
            current = nla_next(attr, &remaining)
            guardCount += 1
        }
        return result
    }

    /// Parses the attributes nested in `attribute` into a table indexed by type (0...maximum).
    static func table(_ attribute: UnsafeMutablePointer<nlattr>, maximum: Int32) -> [UnsafeMutablePointer<nlattr>?] {
        var table = [UnsafeMutablePointer<nlattr>?](repeating: nil, count: Int(maximum) + 1)
        for attr in nested(attribute) {
            let type = nla_type(attr)
            if type >= 0, type <= maximum { table[Int(type)] = attr }
        }
        return table
    }

    static func bytes(_ attribute: UnsafeMutablePointer<nlattr>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: nla_data(attribute), count: Int(nla_len(attribute))))
    }

    static func string(_ attribute: UnsafeMutablePointer<nlattr>) -> String {
        String(decoding: bytes(attribute).prefix { $0 != 0 }, as: UTF8.self)
    }
}
