import CSodium
#if canImport(Glibc)
import Glibc
#endif

/// A 32-byte WireGuard key (Curve25519 private or public key, or a preshared key).
/// Shown in base64 like `wg`; compared in constant time; `wipe()` clears it with `sodium_memzero`.
public struct Key: Sendable, Hashable, CustomStringConvertible {
    public static let byteCount = 32
    /// Length of the base64 text: 44 characters ending in `=`.
    public static let base64Count = 44

    /// The raw bytes. Kept as a fixed array of 32 bytes.
    public private(set) var bytes: [UInt8]

    /// A key from exactly 32 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Key.byteCount else { return nil }
        self.bytes = Array(bytes)
    }

    /// Parses 44 characters of standard base64 (the form `wg` prints); `nil` for anything else,
    /// including non-canonical trailing bits, as `wg` rejects them.
    public init?(base64 text: some StringProtocol) {
        guard LibSodium.ready else { return nil }
        var utf8 = Array(String(text).utf8)
        guard utf8.count == Key.base64Count, utf8[Key.base64Count - 1] == UInt8(ascii: "="),
              utf8[Key.base64Count - 2] != UInt8(ascii: "=")
        else { return nil }
        var decoded = [UInt8](repeating: 0, count: Key.byteCount + 1)
        var length = 0
        let status = utf8.withUnsafeBufferPointer { input in
            input.withMemoryRebound(to: CChar.self) { chars in
                decoded.withUnsafeMutableBufferPointer { output in
                    sodium_base642bin(output.baseAddress!, output.count, chars.baseAddress!, chars.count,
                                      nil, &length, nil, sodium_base64_VARIANT_ORIGINAL)
                }
            }
        }
        defer {
            LibSodium.wipe(&decoded)
            LibSodium.wipe(&utf8)
        }
        guard status == 0, length == Key.byteCount else { return nil }
        bytes = Array(decoded[0..<Key.byteCount])
    }

    /// Parses 64 hexadecimal digits, the form the UAPI protocol uses.
    public init?(hex text: some StringProtocol) {
        self.init(hexBytes: Array(text.utf8))
    }

    /// Parses 64 hexadecimal digits given as UTF-8 bytes.
    public init?(hexBytes: some Collection<UInt8>) {
        let utf8 = Array(hexBytes)
        guard utf8.count == 2 * Key.byteCount else { return nil }
        var bytes = [UInt8](repeating: 0, count: Key.byteCount)
        for index in 0..<Key.byteCount {
            guard let high = hexValue(utf8[2 * index]), let low = hexValue(utf8[2 * index + 1]) else { return nil }
            bytes[index] = high << 4 | low
        }
        self.bytes = bytes
    }

    /// A new private key: 32 random bytes from libsodium, clamped as Curve25519 requires (like `wg genkey`).
    public static func generatePrivate() -> Key {
        var key = generatePreshared()
        key.bytes[0] &= 248
        key.bytes[31] = (key.bytes[31] & 127) | 64
        return key
    }

    /// A new preshared key: 32 random bytes (like `wg genpsk`).
    public static func generatePreshared() -> Key {
        precondition(LibSodium.ready, "libsodium failed to initialise")
        var bytes = [UInt8](repeating: 0, count: Key.byteCount)
        bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        return Key(bytes: bytes)!
    }

    /// The public key of this private key (X25519 with the base point; libsodium clamps the scalar).
    public var publicKey: Key {
        var output = [UInt8](repeating: 0, count: Key.byteCount)
        _ = output.withUnsafeMutableBufferPointer { out in
            bytes.withUnsafeBufferPointer { crypto_scalarmult_base(out.baseAddress!, $0.baseAddress!) }
        }
        return Key(bytes: output)!
    }

    /// Whether every byte is zero (the "no key" value the kernel and UAPI report).
    public var isZero: Bool { sodium_is_zero(bytes, bytes.count) == 1 }

    /// Standard base64 with padding, 44 characters.
    public var base64: String {
        var output = [CChar](repeating: 0, count: Key.base64Count + 1)
        _ = output.withUnsafeMutableBufferPointer { out in
            bytes.withUnsafeBufferPointer {
                sodium_bin2base64(out.baseAddress!, out.count, $0.baseAddress, $0.count, sodium_base64_VARIANT_ORIGINAL)
            }
        }
        defer { LibSodium.wipe(&output) }
        return String(decoding: output[0..<Key.base64Count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// 64 lower-case hexadecimal digits, for the UAPI protocol.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(2 * Key.byteCount)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// `(hidden)`: a key that slips into a log line or an interpolated message never shows its bytes
    /// (it may be a private key). Public keys are printed deliberately, with `base64`.
    public var description: String { "(hidden)" }

    /// Clears the bytes with `sodium_memzero`.
    public mutating func wipe() { LibSodium.wipe(&bytes) }

    /// Constant-time comparison (`sodium_memcmp`).
    public static func == (lhs: Key, rhs: Key) -> Bool {
        lhs.bytes.count == rhs.bytes.count && sodium_memcmp(lhs.bytes, rhs.bytes, lhs.bytes.count) == 0
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}

/// Clearing secrets that live outside a `Key` (input buffers, key file text).
public enum Secrets {
    /// Overwrites every byte with zero (`sodium_memzero`, which the compiler may not remove).
    public static func wipe(_ bytes: inout [UInt8]) { LibSodium.wipe(&bytes) }
}

/// libsodium set-up and helpers.
enum LibSodium {
    /// `sodium_init()` once; `true` when the library is usable.
    static let ready: Bool = sodium_init() >= 0

    static func wipe<T>(_ array: inout [T]) {
        array.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
    }
}

private func hexValue(_ character: UInt8) -> UInt8? {
    switch character {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
    default: nil
    }
}
