// libFuzzer target for the control server's state file: `make fuzz-state`.
// The first byte says how the rest becomes a state file: as it is (bit 0 clear), or decoded and
// made valid where the input cannot be — every party's authority the fuzz party's, each member's
// certificate given its party's id (bit 1) and its record's key (bit 2), then signed — and encoded
// again, so that restoring finds members with valid certificates whose fields the input chose.
// Checked: decoding never traps; what decodes encodes to bytes that decode to the same parties;
// `ControlCore.restore` keeps exactly the members whose certificate verifies, offline, with the
// prefixes it grants; the snapshot of a restored core, saved and restored again, is the same but
// for the revision; the core then serves the restored members (the configured party added, expiry,
// registers and heartbeats of the fuzz party's members) with replies they can read.
// Without -D FUZZING it is a replayer (`StateFuzz FILE…`) and writes the seeds (`--seeds DIR`).
#if canImport(Glibc)
import Glibc
#endif
@testable import Control
import FuzzSupport
import Net
import Rendezvous

enum Fuzz {
    /// The time of the restore (ms since 1970): June 2025.
    static let wall: UInt64 = 1_750_000_000_000
    nonisolated(unsafe) static var counter: UInt64 = 0
}

func fail(_ what: String) -> Never { fatalError("StateFuzz: \(what)") }

/// The same parties as a state file holds them (the prefixes a certificate grants are not saved).
func same(_ a: [StateStore.SavedParty], _ b: [StateStore.SavedParty]) -> Bool {
    func saved(_ members: [StateStore.SavedMember]) -> [StateStore.SavedMember] {
        members.map { member in
            var member = member
            member.record.addresses = []
            return member
        }
    }
    return a.count == b.count && zip(a, b).allSatisfy { x, y in
        x.name == y.name && x.authority == y.authority && x.revision == y.revision && saved(x.members) == saved(y.members)
    }
}

/// The state as the input describes it (see the header).
func stateFile(_ input: [UInt8]) -> [UInt8] {
    guard let mode = input.first else { return [] }
    let bytes = Array(input.dropFirst())
    guard mode & 1 != 0, var parties = try? StateStore.decode(bytes) else { return bytes }
    for index in parties.indices {
        parties[index].authority = FuzzParty.authority.publicKey
        let id = Keys.partyID(name: parties[index].name)
        for member in parties[index].members.indices {
            var certificate = parties[index].members[member].record.certificate
            guard certificate.count >= 44 + Crypto.signatureCount else { continue }
            if mode & 2 != 0 { certificate.replaceSubrange(4..<12, with: be64(id)) }
            if mode & 4 != 0 { certificate.replaceSubrange(12..<44, with: parties[index].members[member].record.key.bytes) }
            parties[index].members[member].record.certificate = FuzzParty.signed(Array(certificate.dropLast(Crypto.signatureCount)))
        }
    }
    return StateStore.encode(parties)
}

/// What `restore` must keep: per party id (the last party of a name wins), the members (the last
/// record of a key wins) whose certificate verifies, with the prefixes it grants.
func expected(_ saved: [StateStore.SavedParty]) -> [UInt64: [MemberKey: [IPPrefix]]] {
    var parties: [UInt64: [MemberKey: [IPPrefix]]] = [:]
    for party in saved {
        let id = Keys.partyID(name: party.name)
        var members: [MemberKey: [IPPrefix]] = [:]
        for member in party.members {
            let certificate = try? MemberCertificate.verified(member.record.certificate, authority: party.authority, party: id,
                                                              member: member.record.key, now: Fuzz.wall / 1000)
            if let certificate { members[member.record.key] = certificate.allowedPrefixes }
        }
        parties[id] = members
    }
    return parties
}

func check(_ core: ControlCore, restoredFrom saved: [StateStore.SavedParty]) {
    let want = expected(saved)
    guard Set(core.parties.keys) == Set(want.keys) else { fail("restored other parties than saved") }
    for (id, party) in core.parties {
        let members = want[id]!
        guard Set(party.members.keys) == Set(members.keys) else { fail("party \(party.name): restored other members than verify") }
        for (key, member) in party.members {
            guard !member.online, member.record.key == key, member.record.addresses == members[key],
                  member.controlKey == nil else { fail("member \(key) restored unlike its certificate") }
        }
        let last = saved.last { Keys.partyID(name: $0.name) == id }!
        guard party.revision == (last.revision == UInt64.max ? 0 : last.revision + 1) else { fail("revision not carried over") }
    }
}

func seal(_ member: Int, _ body: ControlMessage.Body) -> [UInt8] {
    Fuzz.counter &+= 1
    return ControlMessage(partyID: FuzzParty.id, timestampMillis: Fuzz.wall, nonce: Fuzz.counter, sender: FuzzParty.keys[member], body: body)
        .encoded(key: FuzzParty.controlKeys[member])
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    _ = try? StateStore.decode(input)
    let bytes = stateFile(input)
    guard let saved = try? StateStore.decode(bytes) else { return 0 }
    // Encoding is decoding's inverse on what decodes.
    let encoded = StateStore.encode(saved)
    guard let again = try? StateStore.decode(encoded), same(again, saved), StateStore.encode(again) == encoded else {
        fail("a decoded state does not survive encoding")
    }
    let core = ControlCore(privateKey: FuzzParty.serverPrivate)
    core.restore(saved, wall: Fuzz.wall)
    check(core, restoredFrom: saved)
    // Saved and restored again: the same parties and members, the revision one further.
    let snapshot = core.snapshot()
    guard let reread = try? StateStore.decode(StateStore.encode(snapshot)), same(reread, snapshot) else { fail("a snapshot does not survive saving") }
    let second = ControlCore(privateKey: FuzzParty.serverPrivate)
    second.restore(reread, wall: Fuzz.wall)
    let resaved = second.snapshot()
    guard resaved.count == snapshot.count, zip(resaved, snapshot).allSatisfy({ a, b in
        a.name == b.name && a.authority == b.authority && a.members == b.members && a.revision == (b.revision == UInt64.max ? 0 : b.revision + 1)
    }) else { fail("restoring a snapshot changed it") }
    // The server goes on: the configured party (its authority may differ from the saved one),
    // expiry, and the fuzz party's members speaking first after the restart.
    core.addParty(name: FuzzParty.name, authority: FuzzParty.authority.publicKey, wall: Fuzz.wall)
    let now: Int64 = 1_000_000_000
    var replies = core.expireSilent(now: now, wall: Fuzz.wall)
    if let party = core.party(named: FuzzParty.name) {
        for (index, key) in FuzzParty.keys.enumerated() where party.members[key] != nil {
            let source = Endpoint(.v4(IPv4Address(198, 51, 100, UInt8(index + 1))), 51820)
            for body in [ControlMessage.Body.heartbeat(revision: 0),
                         .register(cookie: [], nat: .fullCone, candidates: [], certificate: party.members[key]!.record.certificate),
                         .heartbeat(revision: 0)] {
                for reply in seal(index, body).withUnsafeBytes({ core.handle($0, from: source, now: now, wall: Fuzz.wall) }) {
                    replies.append(reply)
                }
            }
        }
    }
    replies += core.expireSilent(now: now + 3_600_000_000_000, wall: Fuzz.wall + 30 * 86_400_000)
    for reply in replies where !FuzzParty.controlKeys.contains(where: { (try? ControlMessage(authenticating: reply.bytes, key: $0)) != nil }) {
        fail("a reply no member can read")
    }
    guard (try? StateStore.decode(StateStore.encode(core.snapshot()))) != nil else { fail("the state after serving does not decode") }
    return 0
}

/// Seeds: the fuzz party with members as a server saves them; one with an old, one with an expired
/// member; two parties; a state to be made valid (mode 7) whose certificates name other keys.
func seeds() -> [(String, [UInt8])] {
    let seconds = Fuzz.wall / 1000
    func member(_ index: Int, lastSeen: UInt64, certificate: [UInt8]? = nil) -> StateStore.SavedMember {
        StateStore.SavedMember(record: MemberRecord(key: FuzzParty.keys[index], nat: .portRestrictedCone,
                                                    candidates: [Candidate(.observed, Endpoint(.v4(IPv4Address(198, 51, 100, UInt8(index))), 51820))],
                                                    certificate: certificate ?? FuzzParty.certificates[index]),
                               lastSeen: lastSeen)
    }
    let expired = try! MemberCertificate.issue(party: FuzzParty.id, member: FuzzParty.keys[3], notBefore: 0, notAfter: seconds - 1,
                                               addresses: [IPPrefix("100.64.0.4/24")!], subnets: [], name: "old",
                                               authority: FuzzParty.authority.secretKey).encoded
    let fuzz = StateStore.SavedParty(name: FuzzParty.name, authority: FuzzParty.authority.publicKey, revision: 7,
                                     members: [member(1, lastSeen: seconds - 60), member(2, lastSeen: seconds)])
    let aged = StateStore.SavedParty(name: FuzzParty.name, authority: FuzzParty.authority.publicKey, revision: UInt64.max,
                                     members: [member(1, lastSeen: 0), member(3, lastSeen: seconds, certificate: expired)])
    let other = StateStore.SavedParty(name: "other", authority: [UInt8](repeating: 1, count: 32), revision: 0, members: [member(0, lastSeen: seconds)])
    let swapped = StateStore.SavedParty(name: "lan", authority: [UInt8](repeating: 2, count: 32), revision: 1,
                                        members: [member(1, lastSeen: seconds, certificate: FuzzParty.certificates[2])])
    return [
        ("empty", [0] + StateStore.encode([])),
        ("party", [0] + StateStore.encode([fuzz])),
        ("aged", [0] + StateStore.encode([aged])),
        ("two-parties", [0] + StateStore.encode([other, fuzz])),
        ("made-valid", [7] + StateStore.encode([swapped, aged])),
    ]
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("StateFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    if writeSeedsIfAsked(seeds) { return 0 }
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { fuzz($0, $1) }
}
#else
@main struct Replay {
    static func main() {
        replayMain(seeds: seeds) { bytes in _ = bytes.withUnsafeBufferPointer { fuzz($0.baseAddress, $0.count) } }
    }
}
#endif
