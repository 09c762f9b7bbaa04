import Net

/// The record types a lookup asks for.
public enum DNSRecordType: UInt16, Sendable {
    case a = 1
    case aaaa = 28

    static let cname: UInt16 = 5
}

/// Why a DNS answer gave no address.
public enum DNSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The datagram is not a well-formed answer (what is wrong).
    case malformed(String)
    /// Not the answer to our question: another ID, another question, or not a response.
    case notOurs
    /// The name does not exist (NXDOMAIN).
    case noSuchName
    /// The server failed or refused (its response code).
    case serverFailure(UInt8)
    /// The name exists but has no address of the type asked for.
    case noAddress
    /// The answer was cut to fit a datagram and holds no address.
    case truncated

    public var description: String {
        switch self {
        case .malformed(let what): "a malformed answer (\(what))"
        case .notOurs: "an answer to another question"
        case .noSuchName: "no such name"
        case .serverFailure(let code): "the name server failed (response code \(code))"
        case .noAddress: "no address of that family"
        case .truncated: "a truncated answer"
        }
    }
}

/// A DNS question for one name and type (RFC 1035), and the parsing of its answer: the addresses
/// at the end of the answer's CNAME chain, with the smallest TTL on the way. Nothing from the
/// answer is taken unless its ID and question are ours; compressed names are followed backwards
/// only, a bounded number of times.
public struct DNSQuery: Sendable, Equatable {
    public let id: UInt16
    public let name: String
    public let type: DNSRecordType

    public init(id: UInt16, name: String, type: DNSRecordType) {
        self.id = id
        self.name = name
        self.type = type
    }

    /// The query datagram: recursion desired, one question of class IN.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        bytes += Self.wireName(name)
        bytes += [UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xFF), 0, 1]
        return bytes
    }

    /// The addresses the answer `bytes` gives for this question and their TTL in seconds.
    public func addresses(in bytes: [UInt8]) throws(DNSError) -> (addresses: [IPAddress], ttl: UInt32) {
        var reader = DNSReader(bytes)
        let header = try reader.header()
        guard header.id == id, header.flags & 0x8000 != 0 else { throw .notOurs }
        let rcode = UInt8(header.flags & 0x000F)
        guard header.questions == 1 else { throw rcode == 0 ? .notOurs : .serverFailure(rcode) }
        let question = try reader.name()
        let (qtype, qclass) = (try reader.uint16(), try reader.uint16())
        guard question == name, qtype == type.rawValue, qclass == 1 else { throw .notOurs }
        switch rcode {
        case 0: break
        case 3: throw .noSuchName
        default: throw .serverFailure(rcode)
        }
        guard header.answers <= Self.recordLimit else { throw .malformed("\(header.answers) answer records") }
        var records: [(owner: String, type: UInt16, ttl: UInt32, data: ArraySlice<UInt8>, at: Int)] = []
        for _ in 0..<header.answers {
            let owner = try reader.name()
            let (type, klass, ttl, length) = (try reader.uint16(), try reader.uint16(), try reader.uint32(), try reader.uint16())
            let start = reader.offset
            let data = try reader.take(Int(length))
            if klass == 1 { records.append((owner, type, ttl, data, start)) }
        }
        // Follow the chain from the question's name through at most `chainLimit` CNAMEs.
        var current = name, ttl = UInt32.max, addresses: [IPAddress] = []
        for _ in 0...Self.chainLimit {
            for record in records where record.owner == current && record.type == type.rawValue {
                switch (type, record.data.count) {
                case (.a, 4): addresses.append(.v4(IPv4Address(record.data.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })))
                case (.aaaa, 16): addresses.append(.v6(IPv6Address(bytes: Array(record.data))!))
                default: throw .malformed("an address record of \(record.data.count) bytes")
                }
                ttl = min(ttl, record.ttl)
            }
            if !addresses.isEmpty { return (addresses, ttl) }
            guard let alias = records.first(where: { $0.owner == current && $0.type == DNSRecordType.cname }) else { break }
            var aliasReader = DNSReader(bytes, at: alias.at)
            current = try aliasReader.name()
            ttl = min(ttl, alias.ttl)
        }
        throw header.flags & 0x0200 != 0 ? .truncated : .noAddress
    }

    /// At most this many answer records are read, and this many CNAMEs followed.
    static let recordLimit = 64
    static let chainLimit = 8

    /// `name` as DNS labels (a valid host name: see `ServerAddress.hostName`).
    static func wireName(_ name: String) -> [UInt8] {
        var bytes: [UInt8] = []
        for label in name.utf8.split(separator: UInt8(ascii: ".")) {
            bytes.append(UInt8(label.count))
            bytes += label
        }
        return bytes + [0]
    }
}

/// Reads a DNS message with bounds checks; every failure is `DNSError.malformed`.
struct DNSReader {
    let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], at offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    mutating func header() throws(DNSError) -> (id: UInt16, flags: UInt16, questions: UInt16, answers: UInt16) {
        let id = try uint16(), flags = try uint16(), questions = try uint16(), answers = try uint16()
        _ = try take(4)   // authority and additional counts: not read
        return (id, flags, questions, answers)
    }

    mutating func uint16() throws(DNSError) -> UInt16 {
        let slice = try take(2)
        return UInt16(slice[slice.startIndex]) << 8 | UInt16(slice[slice.startIndex + 1])
    }

    mutating func uint32() throws(DNSError) -> UInt32 {
        UInt32(try uint16()) << 16 | UInt32(try uint16())
    }

    mutating func take(_ count: Int) throws(DNSError) -> ArraySlice<UInt8> {
        guard count <= bytes.count - offset else { throw .malformed("it ends at byte \(bytes.count)") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// A name, lowercased, labels joined by dots. Compression pointers must point before the
    /// name that holds them (no loops); at most 255 bytes of name.
    mutating func name() throws(DNSError) -> String {
        var labels: [UInt8] = []
        var position = offset, end: Int?, jumps = 0
        while true {
            guard position < bytes.count else { throw .malformed("a name runs past the end") }
            let length = Int(bytes[position])
            switch length & 0xC0 {
            case 0xC0:
                guard position + 1 < bytes.count else { throw .malformed("a name runs past the end") }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < position, jumps < 16 else { throw .malformed("a name pointer does not point back") }
                if end == nil { end = position + 2 }
                position = target
                jumps += 1
            case 0:
                if length == 0 {
                    offset = end ?? position + 1
                    return String(decoding: labels.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
                }
                guard position + length < bytes.count else { throw .malformed("a label runs past the end") }
                if !labels.isEmpty { labels.append(UInt8(ascii: ".")) }
                labels += bytes[(position + 1)...(position + length)]
                guard labels.count <= 255 else { throw .malformed("a name longer than 255 bytes") }
                position += length + 1
            default:
                throw .malformed("a label of an unknown kind")
            }
        }
    }
}
