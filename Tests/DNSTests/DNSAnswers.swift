import DNS

/// DNS answers built byte by byte, as a name server would send them.
enum DNSAnswers {
    struct Record {
        var owner: [UInt8]
        var type: UInt16
        var ttl: UInt32 = 300
        var data: [UInt8]
    }

    /// `name` as uncompressed labels.
    static func labels(_ name: String) -> [UInt8] {
        name.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
    }

    /// An answer to `query` (its ID and question echoed) with `records`; `flags` low bits are the rcode.
    static func answer(to query: [UInt8], rcode: UInt8 = 0, truncated: Bool = false, records: [Record] = [], id: UInt16? = nil) -> [UInt8] {
        var bytes = query
        if let id { bytes[0] = UInt8(id >> 8); bytes[1] = UInt8(id & 0xFF) }
        bytes[2] = 0x81 | (truncated ? 0x02 : 0)
        bytes[3] = 0x80 | rcode
        bytes[6] = UInt8(records.count >> 8)
        bytes[7] = UInt8(records.count & 0xFF)
        for record in records {
            bytes += record.owner
            bytes += [UInt8(record.type >> 8), UInt8(record.type & 0xFF), 0, 1]
            bytes += [UInt8(record.ttl >> 24), UInt8(record.ttl >> 16 & 0xFF), UInt8(record.ttl >> 8 & 0xFF), UInt8(record.ttl & 0xFF)]
            bytes += [UInt8(record.data.count >> 8), UInt8(record.data.count & 0xFF)]
            bytes += record.data
        }
        return bytes
    }

    /// A pointer to the question's name (offset 12), as servers compress the first owner name.
    static let questionName: [UInt8] = [0xC0, 12]
}
