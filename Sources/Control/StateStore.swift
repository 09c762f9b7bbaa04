import CLinux
import Net
import Rendezvous

/// The control server's persistent state — parties (name, authority, revision) and their members
/// (record with certificate, last seen) — in one binary file, `DIR/control.state`, mode 0600,
/// replaced atomically (temporary file in the same directory, fsync, rename, fsync of the directory).
///
///     "LRST" version(2) | parties (u16) | per party: name length (u8) name, authority (32), revision (u64),
///     members (u16), per member: last seen (u64, s since 1970), record (key, NAT, candidates, certificate)
///
/// The directory must belong to the user the server runs as and be writable by no one else: then
/// no one else can plant a file or a link where the state is written. A state file that is not
/// exactly what the server writes is refused with what is wrong and where, and left as it is.
public struct StateStore {
    public let directory: String
    public var path: String { directory + "/" + Self.fileName }

    static let fileName = "control.state"
    static let temporaryName = "control.state.tmp"
    /// The largest state file read: far above what 1024 parties of 256 members take (90 MB).
    static let sizeLimit = 256 << 20
    /// The largest revision restored: the server counts on from it, one per change, and never
    /// reaches the end of a UInt64 from here.
    public static let revisionLimit = UInt64(Int64.max)

    public init(directory: String) { self.directory = directory }

    /// What is wrong with the state directory or file, and what to do about it.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// A member as saved.
    public struct SavedMember: Sendable, Equatable {
        public var record: MemberRecord
        public var lastSeen: UInt64
    }

    /// A party as saved; read back only through ``decode(_:)``, which checks every field.
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

    /// The parties in `bytes`; the failure says what is wrong and at which byte.
    public static func decode(_ bytes: [UInt8]) throws(Failure) -> [SavedParty] {
        try bytes.withUnsafeBytes { raw in Result { () throws(Failure) in try decode(raw) } }.get()
    }

    private static func decode(_ raw: UnsafeRawBufferPointer) throws(Failure) -> [SavedParty] {
        var fields = Fields(reader: ByteReader(raw))
        guard try fields.raw(4, "the header") == magic else {
            throw Failure("it does not start with LRST: it is not a LANrage control state file")
        }
        let version = try fields.u8("the header")
        guard version == Self.version else {
            throw Failure("its format version is \(version), this server reads version \(Self.version) (written by another LANrage version?)")
        }
        let count = Int(try fields.u16("the party count"))
        var parties: [SavedParty] = []
        var partyIDs = Set<UInt64>()
        for index in 0..<count {
            let place = "party \(index + 1) of \(count)"
            let nameBytes = try fields.raw(Int(try fields.u8("the name of \(place)")), "the name of \(place)")
            guard !nameBytes.isEmpty, let name = String(validating: nameBytes, as: UTF8.self) else {
                throw Failure("\(place) has \(nameBytes.isEmpty ? "an empty name" : "a name that is not UTF-8")")
            }
            guard partyIDs.insert(Keys.partyID(name: name)).inserted else { throw Failure("party '\(name)' appears twice") }
            let authority = try fields.raw(32, "the authority of party '\(name)'")
            let revision = try fields.u64("the revision of party '\(name)'")
            guard revision <= revisionLimit else {
                throw Failure("party '\(name)' has revision \(revision), beyond the largest the server counts on from (\(revisionLimit))")
            }
            let memberCount = Int(try fields.u16("the member count of party '\(name)'"))
            var members: [SavedMember] = []
            var keys = Set<MemberKey>()
            for member in 0..<memberCount {
                let place = "member \(member + 1) of \(memberCount) of party '\(name)'"
                let lastSeen = try fields.u64("the last-seen time of \(place)")
                let record = try fields.member(place)
                guard keys.insert(record.key).inserted else { throw Failure("member \(record.key) of party '\(name)' appears twice") }
                members.append(SavedMember(record: record, lastSeen: lastSeen))
            }
            parties.append(SavedParty(name: name, authority: authority, revision: revision, members: members))
        }
        guard fields.reader.remaining == 0 else {
            throw Failure("\(fields.reader.remaining) bytes follow the last party (from byte \(fields.reader.offset))")
        }
        return parties
    }

    /// Reads the state file's fields: running out of bytes, or a value out of range, names the
    /// field being read.
    private struct Fields {
        var reader: ByteReader

        private func ended(_ field: String) -> Failure {
            Failure("it ends in \(field) (truncated: \(reader.bytes.count) bytes)")
        }

        mutating func u8(_ field: @autoclosure () -> String) throws(Failure) -> UInt8 {
            do { return try reader.u8() } catch { throw ended(field()) }
        }

        mutating func u16(_ field: @autoclosure () -> String) throws(Failure) -> UInt16 {
            do { return try reader.u16() } catch { throw ended(field()) }
        }

        mutating func u64(_ field: @autoclosure () -> String) throws(Failure) -> UInt64 {
            do { return try reader.u64() } catch { throw ended(field()) }
        }

        mutating func raw(_ count: Int, _ field: @autoclosure () -> String) throws(Failure) -> [UInt8] {
            do { return try reader.raw(count) } catch { throw ended(field()) }
        }

        mutating func member(_ field: @autoclosure () -> String) throws(Failure) -> MemberRecord {
            let start = reader.offset
            do {
                return try MemberRecord.decode(from: &reader)
            } catch .truncated {
                throw ended(field())
            } catch {
                throw Failure("\(field()) (from byte \(start)) has a value out of range: "
                    + "its NAT kind, candidate count or kind, address family, or certificate length")
            }
        }
    }

    /// The saved parties, or an empty list when there is no state file yet. A file that cannot be
    /// restored is left as it is; the failure names it, says what is wrong and what to do.
    public func load() throws(Failure) -> [SavedParty] {
        let directoryFD = try openDirectory()
        defer { close(directoryFD) }
        let fd = lanrage_openat(directoryFD, Self.fileName, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0)
        if fd < 0 {
            if lanrage_errno() == ENOENT { return [] }
            if lanrage_errno() == ELOOP { throw Failure("\(path) is a symbolic link, not the state file the server writes: remove it") }
            throw Failure("cannot read \(path): \(Self.reason())")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure("cannot read \(path): \(Self.reason())") }
        guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else { throw Failure("\(path) is not a regular file: move it away") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 {
                if lanrage_errno() == EINTR { continue }
                throw Failure("cannot read \(path): \(Self.reason())")
            }
            if count == 0 { break }
            bytes += chunk[..<count]
            guard bytes.count <= Self.sizeLimit else {
                throw Failure("\(path) is larger than \(Self.sizeLimit >> 20) MiB, more than any state the server writes: "
                    + "it is left as it is; move it away to start with no parties")
            }
        }
        do {
            return try Self.decode(bytes)
        } catch {
            throw Failure("\(path) cannot be restored: \(error). It is left as it is: "
                + "put back a good copy, or move it away to start with no parties")
        }
    }

    /// Writes `bytes` as the new state: temporary file, fsync, rename, fsync of the directory.
    public func save(_ bytes: [UInt8]) throws(Failure) {
        let directoryFD = try openDirectory()
        defer { close(directoryFD) }
        let temporary = directory + "/" + Self.temporaryName
        // One left by a crash goes first (a link is removed, not followed); the new one is created
        // afresh, never through a link.
        if unlinkat(directoryFD, Self.temporaryName, 0) != 0 && lanrage_errno() != ENOENT {
            throw Failure("cannot remove \(temporary): \(Self.reason()) (move it away)")
        }
        let fd = lanrage_openat(directoryFD, Self.temporaryName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure("cannot create \(temporary): \(Self.reason())") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if lanrage_errno() == EINTR { continue }
                let reason = Self.reason()
                close(fd)
                throw Failure("cannot write \(temporary): \(reason)")
            }
            written += count
        }
        fchmod(fd, 0o600)
        guard fsync(fd) == 0 else {
            let reason = Self.reason()
            close(fd)
            throw Failure("cannot write \(temporary) to disk (fsync): \(reason)")
        }
        close(fd)
        guard renameat(directoryFD, Self.temporaryName, directoryFD, Self.fileName) == 0 else {
            throw Failure("cannot rename \(temporary) to \(path): \(Self.reason())")
        }
        fsync(directoryFD)
    }

    /// Opens the state directory after checking that only the server's user can change it.
    private func openDirectory() throws(Failure) -> Int32 {
        let fd = lanrage_open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw Failure("cannot open the state directory \(directory): \(Self.reason())") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = Self.reason()
            close(fd)
            throw Failure("cannot read the state directory \(directory): \(reason)")
        }
        let user = geteuid()
        if info.st_uid != user {
            close(fd)
            throw Failure("the state directory \(directory) belongs to uid \(info.st_uid), not to uid \(user) that the server runs as, "
                + "so another user could replace the state: give it to the server's user (chown \(user) \(directory)) or use another --state")
        }
        if info.st_mode & 0o022 != 0 {
            close(fd)
            let who = info.st_mode & 0o020 != 0 ? (info.st_mode & 0o002 != 0 ? "its group and everyone" : "its group") : "everyone"
            throw Failure("the state directory \(directory) is writable by \(who) (mode \(String(info.st_mode & 0o7777, radix: 8))), "
                + "so another user could replace the state file: run chmod go-w \(directory)")
        }
        return fd
    }

    private static func reason() -> String { String(cString: strerror(lanrage_errno())) }
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
    /// whose certificate no longer verifies at `wall`, ms since 1970, are left out). The server
    /// counts each party's revision on from the saved one, which ``StateStore/decode(_:)`` bounds
    /// by ``StateStore/revisionLimit``.
    public func restore(_ saved: [StateStore.SavedParty], wall: UInt64) {
        for party in saved { restore(party, wall: wall) }
    }
}
