import Control
import Rendezvous
import Testing

/// The state file's decoder: what it accepts, it writes back byte for byte.
@Suite struct StateStoreTests {
    /// A state file with one party named by `name` (raw bytes), no members.
    func state(name: [UInt8]) -> [UInt8] {
        Array("LRST".utf8) + [2, 0, 1, UInt8(name.count)] + name + [UInt8](repeating: 7, count: 32) + [0, 0, 0, 0, 0, 0, 0, 9] + [0, 0]
    }

    @Test func aPartyNameThatIsNotUTF8IsRefused() {
        // Decoded with the bad bytes replaced, the party would be saved under another name (and
        // so another party id), cut at 255 bytes in the middle of a character.
        #expect(throws: WireError.malformed) { try StateStore.decode(state(name: [UInt8](repeating: 0xFF, count: 200))) }
        #expect(throws: WireError.malformed) { try StateStore.decode(state(name: Array("lan".utf8) + [0xC3])) }
    }

    @Test func whatDecodesEncodesToTheSameBytes() throws {
        // 127 two-byte characters: 254 bytes, the longest such name a state file holds.
        let name = String(repeating: "é", count: 127)
        let bytes = state(name: Array(name.utf8))
        let parties = try StateStore.decode(bytes)
        #expect(parties.map(\.name) == [name])
        #expect(parties.first?.revision == 9)
        #expect(StateStore.encode(parties) == bytes)
    }
}
