import Net

/// Where an HTTP request goes on the gateway: its TCP endpoint and the path. Parsed from
/// `http://a.b.c.d[:port]/path` (the address a literal IPv4 address, as gateways announce it; the
/// path printable ASCII without spaces, so that it cannot break the request line).
public struct UPnPURL: Sendable, Equatable {
    public var endpoint: Endpoint
    public var path: [UInt8]

    public init(endpoint: Endpoint, path: [UInt8]) {
        self.endpoint = endpoint
        self.path = path
    }

    /// `text` as an absolute URL, or as a path under `base` (the description's location).
    init?(_ untrimmed: ArraySlice<UInt8>, under base: UPnPURL? = nil) {
        let text = untrimmed.trimmingASCIISpaces
        guard !text.isEmpty, text.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        let scheme = "http://".utf8
        guard text.count > scheme.count, UPnP.starts(text, with: scheme) else {
            guard let base else { return nil }
            self.init(endpoint: base.endpoint, path: text.first == UInt8(ascii: "/") ? Array(text) : [UInt8(ascii: "/")] + text)
            return
        }
        let rest = text.dropFirst(scheme.count)
        let authority = rest.prefix { $0 != UInt8(ascii: "/") }
        let host = authority.prefix { $0 != UInt8(ascii: ":") }
        let portText = authority.dropFirst(host.count + 1)
        guard let address = IPv4Address(String(decoding: host, as: UTF8.self)) else { return nil }
        var port: UInt16 = 80
        if !portText.isEmpty {
            guard let parsed = UPnP.decimal(portText), parsed > 0, parsed <= Int(UInt16.max) else { return nil }
            port = UInt16(parsed)
        }
        let path = rest.dropFirst(authority.count)
        self.init(endpoint: Endpoint(.v4(address), port), path: path.isEmpty ? [UInt8(ascii: "/")] : Array(path))
    }
}

/// A gateway's WAN connection service (WANIPConnection or WANPPPConnection, IGD 1 or 2): where
/// its SOAP actions are posted, and its type, which names their namespace.
public struct UPnPService: Sendable, Equatable {
    public var control: UPnPURL
    public var type: [UInt8]
}

/// The bytes of UPnP Internet Gateway Device control (UPnP Device Architecture 1.1, IGD's
/// WANIPConnection): SSDP's search sent to the gateway's port 1900, and the HTTP requests that
/// read its description and post SOAP actions, each on a connection of its own. Parsing is by
/// byte matching, linear in the answer (at most 64 KiB), lenient where gateways differ (header
/// case, spaces around values, namespace prefixes, chunked bodies).
enum UPnP {
    /// The most WAN connection services a description offers that are tried.
    static let maxServices = 4

    static let search = Array("""
        M-SEARCH * HTTP/1.1\r
        HOST: 239.255.255.250:1900\r
        MAN: "ssdp:discover"\r
        MX: 1\r
        ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r
        \r

        """.utf8)

    static func get(_ url: UPnPURL) -> [UInt8] {
        Array("GET ".utf8) + url.path + Array(" HTTP/1.1\r\nHost: \(url.endpoint)\r\nConnection: close\r\n\r\n".utf8)
    }

    /// A SOAP action of `service`, its arguments in order.
    static func action(_ name: String, of service: UPnPService, _ arguments: [(String, String)]) -> [UInt8] {
        let type = String(decoding: service.type, as: UTF8.self)
        var body = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
            + "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:\(name) xmlns:u=\"\(type)\">"
        for (key, value) in arguments { body += "<\(key)>\(value)</\(key)>" }
        body += "</u:\(name)></s:Body></s:Envelope>\r\n"
        return Array("POST ".utf8) + service.control.path + Array("""
             HTTP/1.1\r
            Host: \(service.control.endpoint)\r
            Content-Type: text/xml; charset="utf-8"\r
            SOAPAction: "\(type)#\(name)"\r
            Content-Length: \(body.utf8.count)\r
            Connection: close\r
            \r
            \(body)
            """.utf8)
    }

    /// The status code and body of the HTTP/1.x response in `bytes` (read to its end), a chunked
    /// body joined; nil when the bytes are not one.
    static func response(_ bytes: [UInt8]) -> (status: Int, body: [UInt8])? {
        guard let end = find(Array("\r\n\r\n".utf8), in: bytes[...]) else { return nil }
        let head = bytes[..<end]
        guard head.starts(with: "HTTP/1.".utf8), head.count >= 12, let status = decimal(head[(head.startIndex + 9)..<(head.startIndex + 12)]) else {
            return nil
        }
        var body = Array(bytes[(end + 4)...])
        if let coding = header("transfer-encoding", in: head), find(Array("chunked".utf8), in: lowered(coding)[...]) != nil {
            var joined: [UInt8] = [], rest = body[...]
            while let line = find(Array("\r\n".utf8), in: rest),
                  let size = hexadecimal(rest[rest.startIndex..<line].prefix { $0 != UInt8(ascii: ";") }.trimmingASCIISpaces),
                  size > 0, size <= rest.endIndex - line - 2 {
                joined += rest[(line + 2)..<(line + 2 + size)]
                rest = rest[(line + 2 + size)...].dropFirst(2)
            }
            body = joined
        }
        return (status, body)
    }

    /// The SSDP answer's `LOCATION`.
    static func location(_ bytes: [UInt8]) -> UPnPURL? {
        guard bytes.starts(with: "HTTP/1.".utf8) else { return nil }
        return header("location", in: bytes[...]).flatMap { UPnPURL($0) }
    }

    /// The value of the header `name` (lowercase) in an HTTP head, whatever its case, trimmed.
    static func header(_ name: String, in head: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        let key = Array(name.utf8) + [UInt8(ascii: ":")]
        for line in head.split(separator: UInt8(ascii: "\n")) where line.count > key.count && starts(line, with: key) {
            return line.dropFirst(key.count).trimmingASCIISpaces
        }
        return nil
    }

    /// Whether `bytes` start with `prefix` (lowercase), letters in either case.
    static func starts(_ bytes: ArraySlice<UInt8>, with prefix: some Sequence<UInt8>) -> Bool {
        var index = bytes.startIndex
        for expected in prefix {
            guard index < bytes.endIndex else { return false }
            let byte = bytes[index]
            guard byte == expected || (expected >= 97 && expected <= 122 && byte | 0x20 == expected) else { return false }
            index += 1
        }
        return true
    }

    /// The WAN connection services in the device description `xml` fetched from `location`, in
    /// the order listed, at most ``maxServices``.
    static func services(in xml: [UInt8], from location: UPnPURL) -> [UPnPService] {
        let base = element("URLBase", in: xml[...]).flatMap { UPnPURL($0) } ?? location
        var found: [UPnPService] = []
        var rest = xml[...]
        while found.count < maxServices, let start = find(Array("<service>".utf8), in: rest) {
            let block = rest[start...]
            let end = find(Array("</service>".utf8), in: block) ?? block.endIndex
            rest = xml[end...]
            guard let type = element("serviceType", in: block[..<end]), isWANConnection(type),
                  let control = element("controlURL", in: block[..<end]).flatMap({ UPnPURL($0, under: base) }) else { continue }
            found.append(UPnPService(control: control, type: Array(type)))
        }
        return found
    }

    /// `urn:schemas-upnp-org:service:WANIPConnection:N` or `…:WANPPPConnection:N`, N one digit: the
    /// type also goes into the request's header and XML, so nothing else is taken.
    static func isWANConnection(_ type: ArraySlice<UInt8>) -> Bool {
        let prefix = Array("urn:schemas-upnp-org:service:".utf8)
        guard type.starts(with: prefix), let version = type.last, version >= UInt8(ascii: "1"), version <= UInt8(ascii: "9") else { return false }
        let name = type.dropFirst(prefix.count).dropLast()
        return name.elementsEqual("WANIPConnection:".utf8) || name.elementsEqual("WANPPPConnection:".utf8)
    }

    /// The text of the first element `name` in `xml`, whatever its namespace prefix, trimmed.
    static func element(_ name: String, in xml: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        let tag = Array(name.utf8) + [UInt8(ascii: ">")]
        var rest = xml
        while let at = find(tag, in: rest) {
            rest = xml[(at + tag.count)...]
            // `<name>`, or `<prefix:name>` with a prefix of at most 32 name bytes: not a closing tag.
            var open = at - 1
            if open >= xml.startIndex, xml[open] == UInt8(ascii: ":") {
                let floor = max(xml.startIndex, open - 33)
                open -= 1
                while open > floor, isNameByte(xml[open]) { open -= 1 }
            }
            guard open >= xml.startIndex, xml[open] == UInt8(ascii: "<") else { continue }
            return rest.prefix { $0 != UInt8(ascii: "<") }.trimmingASCIISpaces
        }
        return nil
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        (byte | 0x20 >= 97 && byte | 0x20 <= 122) || (byte >= 48 && byte <= 57) || byte == 95 || byte == 45 || byte == 46
    }

    static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        var index = haystack.startIndex
        while index <= haystack.endIndex - needle.count {
            if haystack[index] == first, haystack[index..<index + needle.count].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    static func lowered(_ bytes: ArraySlice<UInt8>) -> [UInt8] { bytes.map { $0.asciiLowercased } }

    /// A decimal number of at most 9 digits (no sign, no spaces).
    static func decimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 9, bytes.allSatisfy({ $0.isASCIIDigit }) else { return nil }
        return bytes.reduce(0) { $0 * 10 + Int($1 - 48) }
    }

    /// A hexadecimal number of at most 7 digits (a chunk of at most 256 MiB; the answer holds 64 KiB).
    static func hexadecimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 7 else { return nil }
        var value = 0
        for byte in bytes {
            if byte.isASCIIDigit {
                value = value << 4 | Int(byte - 48)
            } else if byte | 0x20 >= 97, byte | 0x20 <= 102 {
                value = value << 4 | Int((byte | 0x20) - 87)
            } else {
                return nil
            }
        }
        return value
    }
}
