import Net
import Rendezvous

/// A party: its name, its key (derived from the secret; the secret itself is never stored), its
/// members by public key, and a revision that counts every change of the registry.
public final class Party {
    public let name: String
    public let id: UInt64
    let key: [UInt8]
    public internal(set) var members: [MemberKey: Member] = [:]
    public internal(set) var revision: UInt64 = 0
    /// The start (wall milliseconds) of the last punch announced to each pair, smaller key first:
    /// a request that crosses its peer's joins the punch under way (see `ControlCore`).
    var punches: [PunchPair: UInt64] = [:]

    init(name: String, key: [UInt8]) {
        self.name = name
        self.id = Keys.partyID(name: name)
        self.key = key
    }

    public var onlineCount: Int { members.values.lazy.filter(\.online).count }
}

/// A member of a party, as the server keeps it.
public struct Member: Sendable {
    public var record: MemberRecord
    /// Whether it registered and has not left or gone silent since.
    public var online = false
    /// Where its last authenticated message came from: where pushes go.
    public var source: Endpoint?
    /// Monotonic time of its last authenticated message.
    public var lastHeard: Int64 = 0
    var replay = ReplayWindow()

    init(record: MemberRecord) { self.record = record }
}

/// Two members, smaller key first: one entry per pair whichever side asks.
struct PunchPair: Hashable {
    let first: MemberKey
    let second: MemberKey

    init(_ one: MemberKey, _ other: MemberKey) {
        (first, second) = one < other ? (one, other) : (other, one)
    }
}
