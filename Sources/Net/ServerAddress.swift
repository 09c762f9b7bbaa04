/// A server as a configuration names it: an address, or a host name resolved at run time (a
/// dynamic-DNS name whose address changes), and a port. Written `192.0.2.1:3478`,
/// `[2001:db8::1]:3478` or `control.example.net:3478`.
public struct ServerAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Host: Hashable, Sendable {
        case address(IPAddress)
        /// A host name, lowercased, without a trailing dot.
        case name(String)
    }

    public let host: Host
    public let port: UInt16

    public init(_ endpoint: Endpoint) {
        self.init(host: .address(endpoint.address), port: endpoint.port)
    }

    /// Parses `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`, where NAME is a host name of letters, digits
    /// and hyphens in dot-separated labels (RFC 1123); `nil` for anything else.
    public init?(_ text: String) {
        if let endpoint = Endpoint(text) {
            self.init(endpoint)
            return
        }
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let port = UInt16(portText),
              let name = Self.hostName(text[..<colon])
        else { return nil }
        self.init(host: .name(name), port: port)
    }

    private init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// The endpoint, when the address is given rather than a name.
    public var endpoint: Endpoint? {
        guard case .address(let address) = host else { return nil }
        return Endpoint(address, port)
    }

    /// The host name, when one is given.
    public var name: String? {
        guard case .name(let name) = host else { return nil }
        return name
    }

    public var description: String {
        switch host {
        case .address(let address): Endpoint(address, port).description
        case .name(let name): "\(name):\(port)"
        }
    }

    /// `text` lowercased when it is a host name: 1 to 253 bytes of labels of 1 to 63 letters,
    /// digits and hyphens, no label starting or ending with a hyphen, a trailing dot allowed, and
    /// not all digits and dots (a mistyped address is not a name).
    public static func hostName(_ text: Substring) -> String? {
        var name = text.asciiLowercased
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty, name.utf8.count <= 253 else { return nil }
        let isLetterDigitHyphen: (UInt8) -> Bool = {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "-")
        }
        for label in name.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count), label.allSatisfy(isLetterDigitHyphen),
                  label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else { return nil }
        }
        guard !name.utf8.allSatisfy({ ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ".") }) else { return nil }
        return name
    }
}
