import Net
import Rendezvous
import Time

/// A party: its name, its certificate authority (the Ed25519 public key that signs its members'
/// certificates), its members by public key, and a revision that counts every change of the registry.
public final class Party {
    public let name: String
    public let id: UInt64
    public internal(set) var authority: [UInt8]
    public internal(set) var members: [MemberKey: Member] = [:]
    public internal(set) var revision: UInt64 = 0
    /// The start (wall milliseconds) of the last punch announced to each pair, smaller key first:
    /// a request that crosses its peer's joins the punch under way (see `ControlCore`).
    var punches: [PunchPair: UInt64] = [:]

    init(name: String, authority: [UInt8]) {
        self.name = name
        self.id = Keys.partyID(name: name)
        self.authority = authority
    }

    public var onlineCount: Int { members.values.lazy.filter { $0.online }.count }
}

/// A member of a party, as the server keeps it.
public struct Member: Sendable {
    /// Its record: the certificate (verified) and the prefixes it grants, NAT, candidates.
    public var record: MemberRecord
    /// When its certificate expires (seconds since 1970).
    public var certificateExpiry: UInt64
    /// Whether it registered and has not left or gone silent since.
    public var online = false
    /// Where its last authenticated message came from: where pushes go.
    public var source: Endpoint?
    /// Monotonic time of its last authenticated message.
    public var lastHeard: Int64 = 0
    /// Wall time (s since 1970) of its last authenticated message: a member offline longer than the
    /// server's forget time is removed (kept across restarts).
    public var lastSeen: UInt64
    /// The key its messages are authenticated with (X25519 of its key and the server's), derived on
    /// its first message.
    var controlKey: [UInt8]?
    var replay = ReplayWindow()
    /// Its own rate limit: a known member is never limited by what strangers send.
    var bucket: TokenBucket

    init(record: MemberRecord, certificateExpiry: UInt64, lastSeen: UInt64, burst: Double, now: Int64) {
        self.record = record
        self.certificateExpiry = certificateExpiry
        self.lastSeen = lastSeen
        bucket = TokenBucket(burst: burst, now: now)
    }
}

/// Two members, smaller key first: one entry per pair whichever side asks.
struct PunchPair: Hashable {
    let first: MemberKey
    let second: MemberKey

    init(_ one: MemberKey, _ other: MemberKey) {
        (first, second) = one < other ? (one, other) : (other, one)
    }
}
