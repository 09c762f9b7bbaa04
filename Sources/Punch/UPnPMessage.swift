import Net

/// Where an HTTP request goes on the gateway: its TCP endpoint and the path. Parsed from
/// `http://a.b.c.d[:port]/path` (the address a literal IPv4 address, as gateways announce it).
public struct UPnPURL: Sendable, Equatable {
    public var endpoint: Endpoint
    public var path: [UInt8]

    public init(endpoint: Endpoint, path: [UInt8]) {
        self.endpoint = endpoint
        self.path = path
    }

    /// `text` as an absolute URL, or as a path under `base` (the description's location).
    init?(_ text: ArraySlice<UInt8>, under base: UPnPURL? = nil) {
        let scheme = "http://".utf8
        guard text.count > scheme.count, text.prefix(scheme.count).elementsEqual(scheme) else {
            guard let base, !text.isEmpty else { return nil }
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
            guard let parsed = UInt16(String(decoding: portText, as: UTF8.self)), parsed != 0 else { return nil }
            port = parsed
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
/// read its description and post SOAP actions, each on a connection of its own.
enum UPnP {
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
        guard head.starts(with: "HTTP/1.".utf8), head.count >= 12, let status = Int(String(decoding: head[head.startIndex + 9..<head.startIndex + 12], as: UTF8.self)) else { return nil }
        var body = Array(bytes[(end + 4)...])
        let lowered = head.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }
        if find(Array("transfer-encoding: chunked".utf8), in: lowered[...]) != nil {
            var joined: [UInt8] = [], rest = body[...]
            while let line = find(Array("\r\n".utf8), in: rest),
                  let size = Int(String(decoding: rest[rest.startIndex..<line].prefix { $0 != UInt8(ascii: ";") }, as: UTF8.self), radix: 16),
                  size > 0, size <= rest.endIndex - line - 2 {
                joined += rest[(line + 2)..<(line + 2 + size)]
                rest = rest[(line + 2 + size)...].dropFirst(2)
            }
            body = joined
        }
        return (status, body)
    }

    /// The value of the SSDP answer's `LOCATION` header.
    static func location(_ bytes: [UInt8]) -> UPnPURL? {
        guard bytes.starts(with: "HTTP/1.".utf8) else { return nil }
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let name = Array("location:".utf8)
            guard line.count > name.count, zip(line, name).allSatisfy({ ($0 | 0x20) == $1 }) else { continue }
            let value = line.dropFirst(name.count).drop { $0 == 0x20 }
            return UPnPURL(value.last == UInt8(ascii: "\r") ? value.dropLast() : value)
        }
        return nil
    }

    /// The first WAN connection service in the device description `xml` fetched from `location`.
    static func service(in xml: [UInt8], from location: UPnPURL) -> UPnPService? {
        let base = element("URLBase", in: xml[...]).flatMap { UPnPURL($0) } ?? location
        var rest = xml[...]
        while let start = find(Array("<service>".utf8), in: rest) {
            let block = rest[start...]
            let end = find(Array("</service>".utf8), in: block) ?? block.endIndex
            rest = xml[end...]
            guard let type = element("serviceType", in: block[..<end]),
                  find(Array("WANIPConnection:".utf8), in: type) != nil || find(Array("WANPPPConnection:".utf8), in: type) != nil,
                  let control = element("controlURL", in: block[..<end]).flatMap({ UPnPURL($0, under: base) }) else { continue }
            return UPnPService(control: control, type: Array(type))
        }
        return nil
    }

    /// The text of the first element `name` in `xml`, whatever its namespace prefix.
    static func element(_ name: String, in xml: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        let tag = Array(name.utf8) + [UInt8(ascii: ">")]
        var rest = xml
        while let at = find(tag, in: rest) {
            let open = at > xml.startIndex ? xml[at - 1] : 0
            let valueStart = at + tag.count
            rest = xml[valueStart...]
            // `<name>` or `<prefix:name>`, not a closing tag.
            guard open == UInt8(ascii: "<") || open == UInt8(ascii: ":"),
                  xml[xml.startIndex..<at].last(where: { $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: "/") }) == UInt8(ascii: "<") else { continue }
            return rest.prefix { $0 != UInt8(ascii: "<") }
        }
        return nil
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
}
