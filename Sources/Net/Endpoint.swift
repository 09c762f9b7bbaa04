import CLinux

/// A UDP endpoint: an address and a port. Written `192.0.2.1:3478` or `[2001:db8::1]:3478`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(_ address: IPAddress, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `IPv4:PORT` or `[IPv6]:PORT`; `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        let text = String(text)
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            guard IPv6Address(host) != nil else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard IPv4Address(host) != nil else { return nil }
        }
        guard let address = IPAddress(host), !portText.isEmpty, portText.allSatisfy({ $0.isASCII }),
              let port = UInt16(portText)
        else { return nil }
        self.init(address, port)
    }

    public var description: String {
        switch address {
        case .v4: "\(address):\(port)"
        case .v6: "[\(address)]:\(port)"
        }
    }
}

extension Endpoint {
    /// Calls `body` with this endpoint as a `sockaddr` and its length.
    public func withSockAddr<Result, Failure: Error>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(Failure) -> Result) throws(Failure) -> Result {
        var storage = sockaddr_storage()
        let length: socklen_t
        switch address {
        case .v4(let v4):
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { raw in
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = port.bigEndian
                sin.pointee.sin_addr.s_addr = v4.value.bigEndian
            }
        case .v6(let v6):
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { raw in
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = port.bigEndian
                withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { bytes in
                    bytes.copyBytes(from: v6.bytes)
                }
            }
        }
        return try withUnsafePointer(to: &storage) { (pointer) throws(Failure) -> Result in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(Failure) -> Result in
                try body(address, length)
            }
        }
    }

    /// The endpoint held in a `sockaddr_storage`, or `nil` for a family other than IPv4/IPv6.
    public init?(_ storage: sockaddr_storage) {
        let family = Int32(storage.ss_family)
        let parsed: Endpoint? = withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET:
                let sin = raw.load(as: sockaddr_in.self)
                return Endpoint(.v4(IPv4Address(UInt32(bigEndian: sin.sin_addr.s_addr))), UInt16(bigEndian: sin.sin_port))
            case AF_INET6:
                let sin6 = raw.load(as: sockaddr_in6.self)
                let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                return Endpoint(.v6(IPv6Address(bytes: bytes)!), UInt16(bigEndian: sin6.sin6_port))
            default:
                return nil
            }
        }
        guard let parsed else { return nil }
        self = parsed
    }
}
