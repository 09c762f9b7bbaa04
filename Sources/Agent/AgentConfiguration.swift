import CLinux
import Output
import Net
import Peer
import Punch
import Rendezvous
import WireGuard
import Time

/// `lanrage agent`'s configuration: a wg-quick style file with four sections.
///
///     [Interface]
///     PrivateKeyFile = /etc/lanrage/private.key   # or PrivateKey = … (then the file must be 0600)
///     ListenPort = 51820
///     Address = 100.64.0.1/24                      # optional: the certificate's addresses by default
///     Name = lanrage0
///
///     [Party]
///     Control = 192.0.2.1:3478                     # or a host name: control.example.net:3478
///     ControlKey = …                               # the control server's public key
///     Name = home
///     Authority = …                                # the party authority's public key
///     Certificate = /etc/lanrage/member.cert       # this member's, from 'lanrage ca sign'
///
///     [Relay]
///     Enabled = yes
///     Prefer = 192.0.2.20:4000
///
///     [Agent]
///     Backend = auto
///     StatusSocket = /var/run/lanrage/agent.sock
///     PersistentKeepalive = 25s
///
/// Durations are `250ms`, `2s`, `5m` or a plain number of seconds.
public struct AgentConfiguration: Sendable {
    public var interfaceName = "lanrage0"
    public var privateKey: Key
    public var listenPort: UInt16 = 51820
    /// `MTU`: the interface's MTU; nil: the path MTU toward the control server less WireGuard's
    /// 80 bytes of overhead (see ``AgentConfiguration/defaultMTU(path:)``).
    public var mtu: Int?
    /// The tunnel addresses: the certificate's (all of them, or those `Address` names).
    public var addresses: [IPPrefix]
    /// The control server: an address, or a host name resolved at run time.
    public var control: ServerAddress
    /// The control server's public key, pinned.
    public var controlKey: MemberKey
    public var party: String
    /// The party authority's public key (Ed25519): it signed every member's certificate.
    public var authority: [UInt8]
    /// This member's certificate (verified against the authority and the private key's public key).
    public var certificate: MemberCertificate
    /// STUN servers for NAT detection; the control server (which answers STUN on its port) by default.
    public var stun: [ServerAddress]
    public var relaysEnabled = true
    /// Relays to use first when the control server offers them, in order.
    public var preferredRelays: [ServerAddress] = []
    /// The protocols asked for a mapping of the WireGuard port on the default gateway, in order
    /// (`PortMapping = pcp, natpmp, upnp`, the default; `off`: none).
    public var portMapping: [PortMappingProtocol] = [.pcp, .natPMP, .upnp]
    /// `nil`: the kernel module when present, else wireguard-go.
    public var backend: BackendKind?
    public var statusSocket = "/var/run/lanrage/agent.sock"
    public var timings = PeerTimings()

    /// Why a configuration was refused; the message names the file and line. Exit 78 for what the
    /// file says, 66 when it cannot be read at all (the exit-code table of docs/CLI.md).
    public struct Problem: Error, ExitCodeProviding, CustomStringConvertible {
        public let description: String
        public let exitCode: ExitCode
        init(_ description: String, exitCode: ExitCode = .config) {
            self.description = description
            self.exitCode = exitCode
        }
    }

    /// Reads and checks the file at `path`; key and secret files it names are read too.
    public static func load(_ path: String) throws(Problem) -> AgentConfiguration {
        let fd = lanrage_open(path, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw Problem("cannot read config \(path): \(String(cString: strerror(lanrage_errno())))", exitCode: .noInput) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else { throw Problem("config \(path) is not a regular file") }
        guard info.st_size <= 1 << 20 else { throw Problem("config \(path) is larger than 1 MiB") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { CLinux.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            guard count > 0 else { break }
            filled += count
        }
        defer { Secrets.wipe(&bytes) }
        return try AgentConfiguration(parsing: bytes[..<filled], file: path, othersCanRead: info.st_mode & 0o077 != 0)
    }

    /// Parses a configuration; `othersCanRead` refuses an inline private key in a file others can read.
    public init(parsing bytes: ArraySlice<UInt8>, file: String, othersCanRead: Bool = false) throws(Problem) {
        var section = ""
        var seen: Set<String> = []
        var privateKey: Key?, privateKeyLine = 0
        var control: ServerAddress?, party: String?, controlKey: MemberKey?, authority: [UInt8]?
        var certificate: (bytes: [UInt8], line: Int)?
        var addresses: [IPPrefix] = []
        var stun: [ServerAddress] = []
        var timings = PeerTimings()

        for line in INILines(bytes) {
            func problem(_ message: String) -> Problem { Problem("\(file):\(line.number): \(message)") }
            switch line.content {
            case .section(let name):
                guard ["interface", "party", "relay", "agent"].contains(name) else {
                    throw problem("unknown section [\(name)] (expected [Interface], [Party], [Relay] or [Agent])")
                }
                section = name
            case .invalid:
                // The line is not echoed: it may hold a private key.
                throw problem("expected 'Key = Value' or a [Section]")
            case .entry(let key, let value):
                guard !section.isEmpty else { throw problem("'\(key)' before any section") }
                let lowered = key.asciiLowercased
                guard seen.insert("\(section).\(lowered)").inserted || lowered == "address" || lowered == "prefer" || lowered == "stun" else {
                    throw problem("'\(key)' given twice in [\(section)]")
                }
                func server() throws(Problem) -> ServerAddress {
                    guard let parsed = ServerAddress(value) else { throw problem("\(key) '\(value)' is not IP:PORT or HOSTNAME:PORT") }
                    return parsed
                }
                func duration() throws(Problem) -> Duration {
                    guard let parsed = Self.duration(value), parsed > .zero else {
                        throw problem("\(key) '\(value)' is not a duration (250ms, 2s, 5m, or seconds)")
                    }
                    return parsed
                }
                func count() throws(Problem) -> Int {
                    guard let parsed = Int(value), parsed > 0, parsed <= 1000 else { throw problem("\(key) '\(value)' is not a number from 1 to 1000") }
                    return parsed
                }
                switch (section, lowered) {
                case ("interface", "privatekey"):
                    guard let key = Key(base64: value) else { throw problem("PrivateKey is not a valid key (44 characters of base64, as 'lanrage genkey' prints)") }
                    privateKey = key
                    privateKeyLine = line.number
                case ("interface", "privatekeyfile"):
                    var text: [UInt8]
                    do { text = try SecretFile.read(value) } catch { throw problem("PrivateKeyFile: \(error)") }
                    defer { Secrets.wipe(&text) }
                    guard let key = Key(base64: String(decoding: text, as: UTF8.self)) else {
                        throw problem("PrivateKeyFile \(value) does not hold a key (44 characters of base64, as 'lanrage genkey' prints)")
                    }
                    privateKey = key
                case ("interface", "listenport"):
                    guard let port = UInt16(value), port > 0 else { throw problem("ListenPort '\(value)' is not a port number (1 to 65535)") }
                    listenPort = port
                case ("interface", "mtu"):
                    guard let value = Int(value), Self.mtuRange.contains(value) else {
                        throw problem("MTU '\(value)' is not a number from \(Self.mtuRange.lowerBound) to \(Self.mtuRange.upperBound)")
                    }
                    mtu = value
                case ("interface", "address"):
                    for item in value.split(separator: ",") {
                        let text = item.filter { $0 != " " && $0 != "\t" }
                        guard let prefix = IPPrefix(text) else { throw problem("Address '\(text)' is not an address with a prefix length") }
                        addresses.append(prefix)
                    }
                case ("interface", "name"):
                    do { try InterfaceName.validate(value) } catch { throw problem("Name: \(error)") }
                    interfaceName = value
                case ("party", "control"):
                    control = try server()
                case ("party", "name"):
                    guard !value.isEmpty, value.utf8.count <= 64 else { throw problem("party Name must be 1 to 64 bytes") }
                    party = value
                case ("party", "controlkey"):
                    guard let key = Key(base64: value), let member = MemberKey(key.bytes) else {
                        throw problem("ControlKey is not a public key (44 characters of base64: the key the control server logs at start)")
                    }
                    controlKey = member
                case ("party", "authority"):
                    guard let key = Crypto.bytes(base64: value, limit: 32), key.count == 32 else {
                        throw problem("Authority is not a public key (44 characters of base64, as 'lanrage ca pubkey' prints)")
                    }
                    authority = key
                case ("party", "certificate"):
                    do { certificate = (try CertificateFile.read(value), line.number) } catch { throw problem(error.description) }
                case ("party", "secretfile"):
                    throw problem("SecretFile is no longer used: members are admitted by certificate (Certificate, Authority and ControlKey in [Party])")
                case ("relay", "enabled"):
                    guard let flag = Self.flag(value) else { throw problem("Enabled '\(value)' is not yes or no") }
                    relaysEnabled = flag
                case ("relay", "prefer"):
                    preferredRelays.append(try server())
                case ("agent", "backend"):
                    switch value.asciiLowercased {
                    case "auto": backend = nil
                    case "netlink", "kernel": backend = .netlink
                    case "uapi", "userspace", "wireguard-go": backend = .uapi
                    default: throw problem("Backend '\(value)' is not auto, netlink or uapi")
                    }
                case ("agent", "portmapping"):
                    let words = value.asciiLowercased.split(whereSeparator: { $0 == "," || $0 == " " })
                    portMapping = []
                    for word in words where words != ["off"] {
                        switch word {
                        case "pcp": portMapping.append(.pcp)
                        case "natpmp", "nat-pmp": portMapping.append(.natPMP)
                        case "upnp", "upnp-igd": portMapping.append(.upnp)
                        default: throw problem("PortMapping '\(value)' is not off or a list of pcp, natpmp and upnp")
                        }
                    }
                case ("agent", "statussocket"):
                    guard value.hasPrefix("/"), value.utf8.count < 100 else { throw problem("StatusSocket must be an absolute path shorter than 100 bytes") }
                    statusSocket = value
                case ("agent", "stun"):
                    stun.append(try server())
                case ("agent", "persistentkeepalive"): timings.persistentKeepalive = try duration()
                case ("agent", "punchpackets"): timings.punchPackets = try count()
                case ("agent", "punchinterval"): timings.punchInterval = try duration()
                case ("agent", "punchacktimeout"): timings.punchAckTimeout = try duration()
                case ("agent", "punchattempts"): timings.punchAttempts = try count()
                case ("agent", "detectiontimeout"): timings.detection = try duration()
                case ("agent", "directconfirm"): timings.directConfirm = try duration()
                case ("agent", "relayconfirm"): timings.relayConfirm = try duration()
                case ("agent", "livenesspoll"): timings.livenessPoll = try duration()
                case ("agent", "upgradebase"): timings.upgradeBase = try duration()
                case ("agent", "upgrademax"): timings.upgradeMax = try duration()
                default:
                    throw problem("unknown key '\(key)' in [\(section.asciiCapitalized)]")
                }
            }
        }
        guard let privateKey else { throw Problem("\(file): [Interface] needs PrivateKeyFile (or PrivateKey)") }
        if privateKeyLine > 0, othersCanRead {
            throw Problem("\(file):\(privateKeyLine): PrivateKey in a file others can read: chmod 600 \(file), or use PrivateKeyFile")
        }
        guard let control else { throw Problem("\(file): [Party] needs Control = IP:PORT or HOSTNAME:PORT (the control server)") }
        guard let controlKey else { throw Problem("\(file): [Party] needs ControlKey (the control server's public key)") }
        guard let party else { throw Problem("\(file): [Party] needs Name") }
        guard let authority else { throw Problem("\(file): [Party] needs Authority (the party authority's public key)") }
        guard let certificate else { throw Problem("\(file): [Party] needs Certificate (this member's, from 'lanrage ca sign')") }
        let verified: MemberCertificate
        do {
            verified = try MemberCertificate.verified(certificate.bytes, authority: authority, party: Keys.partyID(name: party),
                                                      member: MemberKey(privateKey.publicKey.bytes), now: WallClock.unixSeconds())
        } catch {
            throw Problem("\(file):\(certificate.line): Certificate: \(error)")
        }
        for address in addresses where !verified.addresses.contains(address) {
            throw Problem("\(file): Address \(address) is not granted by the certificate (it grants \(verified.addresses.map { "\($0)" }.joined(separator: ", ")))")
        }
        guard timings.upgradeBase <= timings.upgradeMax else { throw Problem("\(file): UpgradeBase is longer than UpgradeMax") }
        self.privateKey = privateKey
        self.addresses = addresses.isEmpty ? verified.addresses : addresses
        self.control = control
        self.controlKey = controlKey
        self.party = party
        self.authority = authority
        self.certificate = verified
        self.stun = stun.isEmpty ? [control] : stun
        self.timings = timings
    }

    /// The host names of the servers (`Control`, `STUN`, `Prefer`), each once, in that order.
    public var hostNames: [String] {
        var names: [String] = []
        for server in [control] + stun + preferredRelays {
            if let name = server.name, !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// The MTUs `MTU =` takes: from IPv6's minimum (an overlay link may carry IPv6) to jumbo frames.
    public static let mtuRange = 1280...9000

    /// WireGuard's overhead on an IPv6 underlay (40 bytes of IP, 8 of UDP, 32 of WireGuard header
    /// and tag), taken for IPv4 too, as wg-quick does: one MTU fits both.
    public static let wireGuardOverhead = 80

    /// The MTU when none is configured, as wg-quick chooses it: the path MTU toward the control
    /// server less ``wireGuardOverhead`` (1500 → 1420; PPPoE's 1492 → 1412), never below 1280;
    /// 1420 when the path is unknown.
    public static func defaultMTU(path: Int?) -> Int {
        guard let path else { return 1500 - wireGuardOverhead }
        return max(mtuRange.lowerBound, path - wireGuardOverhead)
    }

    /// `250ms`, `2s`, `5m`, `1h`, or a plain number of seconds.
    static func duration(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if suffix == "s", number.hasSuffix("m") { continue }
            guard let value = Int64(number), value >= 0, value < Int64.max / millis / 1_000_000 else { return nil }
            return .milliseconds(value * millis)
        }
        guard let seconds = Int64(text), seconds >= 0, seconds < 1 << 32 else { return nil }
        return .seconds(seconds)
    }

    static func flag(_ text: String) -> Bool? {
        switch text.asciiLowercased {
        case "yes", "true", "on", "1": true
        case "no", "false", "off", "0": false
        default: nil
        }
    }
}

/// The lines of an INI-style file: sections, `Key = Value` entries (comments after `#` dropped,
/// spaces trimmed), and lines that are neither. Empty lines are skipped.
struct INILines: Sequence, IteratorProtocol {
    enum Content: Equatable {
        /// A `[Name]` header, the name lowercased.
        case section(String)
        case entry(key: String, value: String)
        case invalid
    }

    struct Line {
        let number: Int
        let content: Content
    }

    private let bytes: ArraySlice<UInt8>
    private var start: Int
    private var number = 0

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        start = bytes.startIndex
    }

    mutating func next() -> Line? {
        while start < bytes.endIndex {
            var end = start
            while end < bytes.endIndex, bytes[end] != 10 { end += 1 }
            var line = bytes[start..<end]
            start = end + 1
            number += 1
            if let hash = line.firstIndex(of: UInt8(ascii: "#")) { line = line[..<hash] }
            line = line.trimmingASCIISpaces
            guard let first = line.first else { continue }
            if first == UInt8(ascii: "["), line.last == UInt8(ascii: "]") {
                return Line(number: number, content: .section(String(decoding: line.dropFirst().dropLast(), as: UTF8.self).asciiLowercased))
            }
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else { return Line(number: number, content: .invalid) }
            let key = String(decoding: line[..<equals].trimmingASCIISpaces, as: UTF8.self)
            let value = String(decoding: line[(equals + 1)...].trimmingASCIISpaces, as: UTF8.self)
            guard !key.isEmpty else { return Line(number: number, content: .invalid) }
            return Line(number: number, content: .entry(key: key, value: value))
        }
        return nil
    }

}
