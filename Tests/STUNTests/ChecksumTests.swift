import Testing
@testable import STUN

func hex(_ text: String) -> [UInt8] {
    let digits = text.filter(\.isHexDigit)
    var bytes: [UInt8] = []
    var index = digits.startIndex
    while index < digits.endIndex {
        let next = digits.index(index, offsetBy: 2)
        bytes.append(UInt8(digits[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

@Suite struct ChecksumTests {
    /// FIPS 180-2 appendix examples, and the empty message.
    @Test(arguments: [
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
    ])
    func sha1KnownAnswers(_ input: String, _ digest: String) {
        #expect(hexString(SHA1.hash(Array(input.utf8))) == digest)
    }

    @Test func sha1OfAMillionAs() {
        var sha = SHA1()
        let chunk = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<1000 { chunk.withUnsafeBytes { sha.update(buffer: $0) } }
        #expect(hexString(sha.finalize()) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// RFC 2202 §3, test cases 1, 2, 3, 6 and 7.
    @Test(arguments: [
        ([UInt8](repeating: 0x0B, count: 20), Array("Hi There".utf8), "b617318655057264e28bc0b6fb378c8ef146be00"),
        (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        ([UInt8](repeating: 0xAA, count: 20), [UInt8](repeating: 0xDD, count: 50), "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
        ([UInt8](repeating: 0xAA, count: 80), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
         "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
        ([UInt8](repeating: 0xAA, count: 80),
         Array("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data".utf8),
         "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
    ])
    func hmacSHA1KnownAnswers(_ key: [UInt8], _ message: [UInt8], _ code: String) {
        #expect(hexString(HMACSHA1.authenticationCode(key: key, message: message)) == code)
    }

    @Test func crc32KnownAnswer() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
    }
}

@Suite struct CRC32SlicingTests {
    /// The sliced CRC agrees with the plain bitwise definition at every length and alignment.
    @Test func agreesWithTheBitwiseDefinition() {
        func bitwise(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            }
            return ~crc
        }
        var generator = SystemRandomNumberGenerator()
        let data = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for start in 0..<9 {
            for end in start...data.count where (end - start) % 7 == 0 || end - start < 20 {
                let slice = data[start..<end]
                #expect(CRC32.checksum(Array(slice)) == bitwise(slice))
            }
        }
    }
}
