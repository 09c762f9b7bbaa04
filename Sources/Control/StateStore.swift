#if canImport(Glibc)
import Glibc
#endif
import Net
import Rendezvous

/// The control server's persistent state — parties (name, derived key, revision) and their members
/// (key, NAT behaviour, candidates) — in one binary file, `DIR/control.state`, mode 0600, replaced
/// atomically (temporary file in the same directory, fsync, rename, fsync of the directory).
///
///     "LRST" version(1) | parties (u16) | per party: name length (u8) name, key (32), revision (u64),
///     members (u16), per member: key (32) NAT (u8) candidates (u8) [kind (u8) endpoint]…
public struct StateStore {
    public let directory: String
    public var path: String { directory + "/control.state" }

    public init(directory: String) { self.directory = directory }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public struct SavedParty: Sendable {
        public var name: String
        public var key: [UInt8]
        public var revision: UInt64
        public var members: [MemberRecord]
    }

    static let magic: [UInt8] = Array("LRST".utf8)

    public static func encode(_ parties: [SavedParty]) -> [UInt8] {
        var writer = ByteWriter(capacity: 4096)
        writer.raw(magic); writer.u8(1)
        writer.u16(UInt16(clamping: parties.count))
        for party in parties.prefix(Int(UInt16.max)) {
            let name = Array(party.name.utf8.prefix(255))
            writer.u8(UInt8(name.count)); writer.raw(name)
            writer.raw(party.key); writer.u64(party.revision)
            writer.u16(UInt16(clamping: party.members.count))
            for member in party.members.prefix(Int(UInt16.max)) { member.encode(into: &writer) }
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> [SavedParty] {
        do {
            return try bytes.withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                guard try reader.raw(4) == magic, try reader.u8() == 1 else { throw WireError.badMagic }
                var parties: [SavedParty] = []
                for _ in 0..<Int(try reader.u16()) {
                    let name = String(decoding: try reader.raw(Int(try reader.u8())), as: UTF8.self)
                    let key = try reader.raw(32), revision = try reader.u64()
                    var members: [MemberRecord] = []
                    for _ in 0..<Int(try reader.u16()) { members.append(try MemberRecord.decode(from: &reader)) }
                    parties.append(SavedParty(name: name, key: key, revision: revision, members: members))
                }
                guard reader.remaining == 0 else { throw WireError.malformed }
                return parties
            }
        } catch let error as WireError {
            throw error
        } catch {
            throw .malformed
        }
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
            StateStore.SavedParty(name: party.name, key: party.key, revision: party.revision,
                                  members: party.members.values.map(\.record).sorted { $0.key < $1.key })
        }
    }

    /// Restores saved parties and members (members stay offline until they speak again).
    public func restore(_ saved: [StateStore.SavedParty]) {
        for party in saved { restore(name: party.name, key: party.key, revision: party.revision, members: party.members) }
    }
}
