import Foundation
import Testing
@testable import WireGuard

/// Keys: libsodium X25519 and base64, checked against `wg` itself.
@Suite struct KeyTests {
    @Test func publicKeyMatchesWgPubkey() throws {
        for _ in 0..<5 {
            let privateText = try Run.checked(["wg", "genkey"])
            let expected = try Run.checked(["wg", "pubkey"], input: Data(privateText.utf8))
            let ours = try Run.command([Run.lanrage, "pubkey"], input: Data(privateText.utf8))
            #expect(ours.status == 0)
            #expect(ours.output == expected, "lanrage pubkey differs from wg pubkey")
            let key = try #require(Key(base64: privateText.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(key.publicKey.base64 + "\n" == expected)
        }
    }

    @Test func generatedKeysAreAcceptedByWg() throws {
        let ours = try Run.command([Run.lanrage, "genkey"])
        #expect(ours.status == 0)
        #expect(ours.output.count == 45 && ours.output.hasSuffix("=\n"))
        let theirs = try Run.checked(["wg", "pubkey"], input: Data(ours.output.utf8))
        let again = try Run.checked([Run.lanrage, "pubkey"], input: Data(ours.output.utf8))
        #expect(theirs == again)
        // Clamped as Curve25519 requires.
        let key = try #require(Key(base64: ours.output.dropLast()))
        #expect(key.bytes[0] & 7 == 0 && key.bytes[31] & 0x80 == 0 && key.bytes[31] & 0x40 != 0)
        // Two keys differ.
        #expect(try Run.checked([Run.lanrage, "genkey"]) != ours.output)
        #expect(try Run.checked([Run.lanrage, "genpsk"]).count == 45)
    }

    /// Same stdout, same exit status and same message as `wg pubkey` on malformed input.
    @Test(arguments: [
        "", "bad\n", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk", // 43 characters
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=extra\n",
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk= \n\t\n",
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=\n", // non-canonical trailing bits
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3f*mk=\n",
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm==\n",
        "yAnz5TF-lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n", // URL-safe alphabet
    ])
    func pubkeyBehavesLikeWg(_ input: String) throws {
        let theirs = try Run.command(["wg", "pubkey"], input: Data(input.utf8))
        let ours = try Run.command([Run.lanrage, "pubkey"], input: Data(input.utf8))
        #expect(ours.status == theirs.status)
        #expect(ours.output == theirs.output)
        #expect(ours.error.replacingOccurrences(of: "lanrage:", with: "wg:") == theirs.error)
    }

    @Test func base64AndHexRoundTrip() throws {
        let key = Key.generatePrivate()
        #expect(Key(base64: key.base64) == key)
        #expect(Key(base64: key.base64)?.bytes == key.bytes && key.bytes.count == 32, "parsed keys expose exactly 32 bytes")
        #expect(Key(hex: key.hex) == key)
        #expect(Key(hex: key.hex.uppercased()) == key)
        #expect(Key(hex: String(key.hex.dropLast())) == nil)
        #expect(Key(base64: String(key.base64.dropLast())) == nil)
        // Interpolating a key (into a log line, an error) never shows it.
        #expect("\(key)" == "(hidden)" && !"\([key])".contains(key.base64))
        var copy = key
        copy.wipe()
        #expect(copy.isZero && !key.isZero)
        #expect(copy != key)
    }

    @Test func keyFileIsWrittenAtomicallyWithMode0600() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lw-keys-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("private.key").path
        let old = umask(0o022)
        defer { umask(old) }
        let result = try Run.command([Run.lanrage, "genkey", "--output", path])
        #expect(result.status == 0 && result.output.isEmpty)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(Key(base64: text.dropLast()) != nil)
        // Overwriting replaces the file whole and leaves no temporary behind.
        try Run.checked([Run.lanrage, "genkey", "--output", path])
        #expect(try String(contentsOfFile: path, encoding: .utf8) != text)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["private.key"])
        // A folder that does not exist is a clear error.
        let bad = try Run.command([Run.lanrage, "genkey", "--output", folder.path + "/missing/key"])
        #expect(bad.status != 0 && bad.error.contains("missing"))
    }
}
