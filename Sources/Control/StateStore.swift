#if canImport(Glibc)
import Glibc
#endif
import Net
import Rendezvous

/// The control server's persistent state — parties (name, authority, revision) and their members
/// (record with certificate, last seen) — in one binary file, `DIR/control.state`, mode 0600,
/// replaced atomically (temporary file in the same directory, fsync, rename, fsync of the directory).
///
///     "LRST" version(2) | parties (u16) | per party: name length (u8) name, authority (32), revision (u64),
///     members (u16), per member: last seen (u64, s since 1970), record (key, NAT, candidates, certificate)
public struct StateStore {
    public let directory: String
    public var path: String { directory + "/control.state" }

    public init(directory: String) { self.directory = directory }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public struct SavedMember: Sendable, Equatable {
        public var record: MemberRecord
        public var lastSeen: UInt64
    }

    public struct SavedParty: Sendable {
        public var name: String
        public var authority: [UInt8]
        public var revision: UInt64
        public var members: [SavedMember]
    }

    static let magic: [UInt8] = Array("LRST".utf8)
    static let version: UInt8 = 2

    public static func encode(_ parties: [SavedParty]) -> [UInt8] {
        var writer = ByteWriter(capacity: 4096)
        writer.raw(magic); writer.u8(version)
        writer.u16(UInt16(clamping: parties.count))
        for party in parties.prefix(Int(UInt16.max)) {
            let name = Array(party.name.utf8.prefix(255))
            writer.u8(UInt8(name.count)); writer.raw(name)
            writer.raw(party.authority); writer.u64(party.revision)
            writer.u16(UInt16(clamping: party.members.count))
            for member in party.members.prefix(Int(UInt16.max)) {
                writer.u64(member.lastSeen)
                member.record.encode(into: &writer)
            }
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> [SavedParty] {
        let decoded = bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try decode(raw) } }
        return try decoded.get()
    }

    private static func decode(_ raw: UnsafeRawBufferPointer) throws(WireError) -> [SavedParty] {
        var reader = ByteReader(raw)
        guard try reader.raw(4) == magic else { throw .badMagic }
        guard try reader.u8() == version else { throw .badVersion }
        var parties: [SavedParty] = []
        for _ in 0..<Int(try reader.u16()) {
            // The name is the party's identity (its id is a hash of it): taken as written or not at
            // all, never repaired into another name that a save would write back.
            guard let name = String(validating: try reader.raw(Int(try reader.u8())), as: UTF8.self) else { throw .malformed }
            let authority = try reader.raw(32), revision = try reader.u64()
            var members: [SavedMember] = []
            for _ in 0..<Int(try reader.u16()) {
                let lastSeen = try reader.u64()
                members.append(SavedMember(record: try MemberRecord.decode(from: &reader), lastSeen: lastSeen))
            }
            parties.append(SavedParty(name: name, authority: authority, revision: revision, members: members))
        }
        guard reader.remaining == 0 else { throw .malformed }
        return parties
    }

    /// The saved parties, or an empty list when there is no state file yet.
    public func load() throws -> [SavedParty] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return [] }
            throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        do {
            return try Self.decode(bytes)
        } catch {
            throw Failure(description: "\(path) is not a LANrage control state file (\(error)); move it away to start empty")
        }
    }

    /// Writes `bytes` as the new state: temporary file, fsync, rename, fsync of the directory.
    public func save(_ bytes: [UInt8]) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Failure(description: "cannot write \(temporary): \(reason)")
            }
            written += count
        }
        fchmod(fd, 0o600)
        guard fsync(fd) == 0 else { close(fd); throw Failure(description: "fsync \(temporary) failed") }
        close(fd)
        guard rename(temporary, path) == 0 else {
            throw Failure(description: "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 { fsync(directoryFD); close(directoryFD) }
    }
}

extension ControlCore {
    /// The state to persist.
    public func snapshot() -> [StateStore.SavedParty] {
        parties.values.sorted { $0.name < $1.name }.map { party in
            StateStore.SavedParty(name: party.name, authority: party.authority, revision: party.revision,
                                  members: party.members.values.sorted { $0.record.key < $1.record.key }
                                      .map { StateStore.SavedMember(record: $0.record, lastSeen: $0.lastSeen) })
        }
    }

    /// Restores saved parties and members (members stay offline until they speak again; those
    /// whose certificate no longer verifies at `wall`, ms since 1970, are left out).
    public func restore(_ saved: [StateStore.SavedParty], wall: UInt64) {
        for party in saved { restore(party, wall: wall) }
    }
}
