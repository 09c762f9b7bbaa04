import Net

/// A wg-quick style configuration: `[Interface]` PrivateKey, ListenPort, FwMark, Address;
/// `[Peer]` PublicKey, PresharedKey, Endpoint, AllowedIPs, PersistentKeepalive.
/// Parsing checks everything (keys, addresses, duplicates) before anything is applied.
public struct Configuration: Sendable, Equatable {
    public var privateKey: Key
    public var listenPort: UInt16?
    public var fwmark: UInt32?
    public var addresses: [IPPrefix]
    public var peers: [PeerConfiguration]
    /// wg-quick settings this file holds that LANrage does not apply (DNS, MTU, PostUp, …), for a warning.
    public var ignored: [String]

    public struct PeerConfiguration: Sendable, Equatable {
        public var publicKey: Key
        public var presharedKey: Key?
        public var endpoint: Endpoint?
        public var allowedIPs: [IPPrefix]
        /// 0 is off.
        public var persistentKeepalive: UInt16
    }

    /// wg-quick keys that only wg-quick acts on.
    static let wgQuickOnly: [String] = ["dns", "mtu", "table", "preup", "postup", "predown", "postdown", "saveconfig"]

    /// Parses `text`; errors name `file` and the line number.
    public init(parsing text: String, file: String) throws(WireGuardError) {
        enum Section { case none, interface, peer }
        var section = Section.none
        var privateKey: Key?
        var listenPort: UInt16?
        var fwmark: UInt32?
        var addresses: [IPPrefix] = []
        var ignored: [String] = []
        var interfaceLine: Int?
        var peers: [PeerConfiguration] = []
        // The peer being read: its fields and the line of its [Peer] header.
        var peerLine = 0
        var publicKey: Key?, presharedKey: Key?, endpoint: Endpoint?, allowed: [IPPrefix] = [], keepalive: UInt16 = 0
        var seenKeys: [String] = []
        var peerKeys: [Key: Int] = [:]

        func error(_ line: Int, _ message: String) -> WireGuardError {
            WireGuardError(.invalidConfig, "\(file):\(line): \(message)")
        }
        func finishPeer() throws(WireGuardError) {
            guard section == .peer else { return }
            guard let key = publicKey else { throw error(peerLine, "[Peer] without PublicKey") }
            guard peerKeys.updateValue(peerLine, forKey: key) == nil else { throw error(peerLine, "duplicate peer \(key.base64)") }
            peers.append(PeerConfiguration(publicKey: key, presharedKey: presharedKey, endpoint: endpoint, allowedIPs: allowed,
                                           persistentKeepalive: keepalive))
            publicKey = nil; presharedKey = nil; endpoint = nil; allowed = []; keepalive = 0
        }

        // Parsed as UTF-8 bytes: a thousand peers must not cost a Character walk per byte.
        let bytes = Array(text.utf8)
        var lineNumber = 0
        var lineStart = 0
        while lineStart <= bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 10 { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            lineNumber += 1
            var line = bytes[lineStart..<lineEnd]
            if let hash = line.firstIndex(of: UInt8(ascii: "#")) { line = line[..<hash] }
            let trimmed = line.trimmingASCIISpaces
            if trimmed.isEmpty { continue }
            if trimmed.first == UInt8(ascii: "[") {
                switch trimmed.asciiLowercased {
                case "[interface]":
                    try finishPeer()
                    if interfaceLine != nil { throw error(lineNumber, "a second [Interface] section") }
                    interfaceLine = lineNumber
                    section = .interface
                    seenKeys = []
                case "[peer]":
                    try finishPeer()
                    section = .peer
                    peerLine = lineNumber
                    seenKeys = []
                default:
                    throw error(lineNumber, "unknown section \(String(decoding: trimmed, as: UTF8.self)) (expected [Interface] or [Peer])")
                }
                continue
            }
            guard let equals = trimmed.firstIndex(of: UInt8(ascii: "=")) else {
                // The line is not echoed: it may hold a private key.
                throw error(lineNumber, "expected 'Key = Value' (or a [Interface] / [Peer] section)")
            }
            let keyBytes = trimmed[..<equals].trimmingASCIISpaces
            let originalKey = String(decoding: keyBytes, as: UTF8.self)
            let key = keyBytes.asciiLowercased
            let valueBytes = trimmed[(equals + 1)...].trimmingASCIISpaces
            let value = String(decoding: valueBytes, as: UTF8.self)
            guard section != .none else { throw error(lineNumber, "'\(originalKey)' before any [Interface] or [Peer] section") }
            let repeatable = key == "address" || key == "allowedips" || Self.wgQuickOnly.contains(key)
            if !repeatable, seenKeys.contains(key) { throw error(lineNumber, "'\(originalKey)' given twice in one section") }
            seenKeys.append(key)
            func list() -> [String] {
                valueBytes.split(separator: UInt8(ascii: ",")).map { String(decoding: $0.trimmingASCIISpaces, as: UTF8.self) }.filter { !$0.isEmpty }
            }
            switch (section, key) {
            case (.interface, "privatekey"):
                guard let parsed = Key(base64: value) else { throw error(lineNumber, "PrivateKey is not a valid key (44 characters of base64, as 'lanrage genkey' prints)") }
                privateKey = parsed
            case (.interface, "listenport"):
                guard let port = UInt16(value) else { throw error(lineNumber, "ListenPort '\(value)' is not a port number (0 to 65535)") }
                listenPort = port
            case (.interface, "fwmark"):
                if value == "off" { fwmark = 0; break }
                let parsed = value.hasPrefix("0x") ? UInt32(value.dropFirst(2), radix: 16) : UInt32(value)
                guard let mark = parsed else { throw error(lineNumber, "FwMark '\(value)' is not a 32-bit number or 'off'") }
                fwmark = mark
            case (.interface, "address"):
                for item in list() {
                    guard let prefix = IPPrefix(item) else { throw error(lineNumber, "Address '\(item)' is not an address with a prefix length") }
                    addresses.append(prefix)
                }
            case (.interface, let other) where Self.wgQuickOnly.contains(other):
                ignored.append(originalKey)
            case (.peer, "publickey"):
                guard let parsed = Key(base64: value) else { throw error(lineNumber, "PublicKey is not a valid key (44 characters of base64)") }
                publicKey = parsed
            case (.peer, "presharedkey"):
                guard let parsed = Key(base64: value) else { throw error(lineNumber, "PresharedKey is not a valid key (44 characters of base64)") }
                presharedKey = parsed
            case (.peer, "endpoint"):
                guard let parsed = Endpoint(value) else {
                    throw error(lineNumber, "Endpoint '\(value)' is not IP:PORT or [IPv6]:PORT (host names are not resolved)")
                }
                endpoint = parsed
            case (.peer, "allowedips"):
                for item in list() {
                    guard let prefix = IPPrefix(item) else { throw error(lineNumber, "AllowedIPs entry '\(item)' is not an address with a prefix length") }
                    allowed.append(prefix)
                }
            case (.peer, "persistentkeepalive"):
                if value == "off" { keepalive = 0; break }
                guard let seconds = UInt16(value) else { throw error(lineNumber, "PersistentKeepalive '\(value)' is not a number of seconds (0 to 65535) or 'off'") }
                keepalive = seconds
            default:
                throw error(lineNumber, "unknown key '\(originalKey)' in [\(section == .interface ? "Interface" : "Peer")]")
            }
        }
        try finishPeer()
        guard interfaceLine != nil else { throw WireGuardError(.invalidConfig, "\(file): no [Interface] section") }
        guard let privateKey else { throw error(interfaceLine!, "[Interface] without PrivateKey") }
        let ownPublicKey = privateKey.publicKey
        if let duplicate = peers.first(where: { $0.publicKey == ownPublicKey }) {
            throw WireGuardError(.invalidConfig, "\(file): peer \(duplicate.publicKey.base64) is this interface's own public key")
        }
        self.privateKey = privateKey
        self.listenPort = listenPort
        self.fwmark = fwmark
        self.addresses = addresses
        self.peers = peers
        self.ignored = ignored
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and carriage returns.
    var trimmingSpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return Substring(self[first...last])
    }
}
