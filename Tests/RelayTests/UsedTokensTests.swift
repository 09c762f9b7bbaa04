import Rendezvous
import Testing
@testable import Relay

/// The relay's table of used tokens: a token's first use is kept until the token expires, the
/// oldest goes first when the table is full.
@Suite struct UsedTokensTests {
    static func tag(_ value: UInt8) -> [UInt8] { [UInt8](repeating: value, count: 32) }
    static let use = UsedTokens.Use(nonce: 7, status: .granted, port: 40_001)

    @Test func aUseIsKeptUntilItsTokenExpires() {
        var table = UsedTokens(capacity: 16)
        table.insert(Self.use, tag: Self.tag(1), expiresAt: 100, nowSeconds: 0)
        table.insert(Self.use, tag: Self.tag(2), expiresAt: 160, nowSeconds: 50)
        #expect(table.use(of: Self.tag(1)) == Self.use && table.count == 2)
        #expect(table.use(of: Self.tag(3)) == nil)
        // At 100 the first token is still valid (it expires after second 100): kept.
        table.insert(Self.use, tag: Self.tag(3), expiresAt: 200, nowSeconds: 100)
        #expect(table.use(of: Self.tag(1)) != nil)
        table.insert(Self.use, tag: Self.tag(4), expiresAt: 200, nowSeconds: 101)
        #expect(table.use(of: Self.tag(1)) == nil && table.use(of: Self.tag(2)) != nil && table.count == 3)
    }

    @Test func theOldestGoesFirstWhenFull() {
        var table = UsedTokens(capacity: 3)
        for value in 0..<1000 {
            table.insert(Self.use, tag: Self.tag(UInt8(value % 256)) + [UInt8(value / 256)], expiresAt: 500, nowSeconds: 0)
            #expect(table.count == min(value + 1, 3))
        }
        #expect(table.use(of: Self.tag(UInt8(999 % 256)) + [3]) != nil && table.use(of: Self.tag(UInt8(996 % 256)) + [3]) == nil)
    }
}
