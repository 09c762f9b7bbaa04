import CSodium
import CLinux

/// A 32-byte WireGuard key (Curve25519 private or public key, or a preshared key).
/// Shown in base64 like `wg`; compared in constant time (`sodium_memcmp`); its bytes live in storage
/// that is cleared with `sodium_memzero` when the last copy of the key goes away (and by `wipe()`).
public struct Key: Sendable, Hashable, CustomStringConvertible {
    public static let byteCount = 32
    /// Length of the base64 text: 44 characters ending in `=`.
    public static let base64Count = 44

    private var storage: SecretStorage

    /// A copy of the raw bytes. For secrets, prefer `withUnsafeBytes`, which copies nothing.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Calls `body` with the 32 bytes in place (the storage may be a byte longer: base64 decoding
    /// needs room for one).
    public func withUnsafeBytes<R, Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> R) throws(Failure) -> R {
        try body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage.buffer)[..<Key.byteCount]))
    }

    /// A key from exactly 32 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Key.byteCount else { return nil }
        storage = SecretStorage()
        for (index, byte) in bytes.enumerated() { storage.buffer[index] = byte }
    }

    /// Parses 44 characters of standard base64 (the form `wg` prints); `nil` for anything else,
    /// including non-canonical trailing bits, as `wg` rejects them.
    public init?(base64 text: some StringProtocol) {
        guard LibSodium.ready else { return nil }
        var utf8 = Array(String(text).utf8)
        defer { LibSodium.wipe(&utf8) }
        guard utf8.count == Key.base64Count, utf8[Key.base64Count - 1] == UInt8(ascii: "="),
              utf8[Key.base64Count - 2] != UInt8(ascii: "=")
        else { return nil }
        let storage = SecretStorage(capacity: Key.byteCount + 1)
        var length = 0
        let status = utf8.withUnsafeBufferPointer { input in
            input.withMemoryRebound(to: CChar.self) { chars in
                sodium_base642bin(storage.buffer.baseAddress!, storage.buffer.count, chars.baseAddress!, chars.count,
                                  nil, &length, nil, sodium_base64_VARIANT_ORIGINAL)
            }
        }
        guard status == 0, length == Key.byteCount else { return nil }
        self.storage = storage
    }

    /// Parses 64 hexadecimal digits, the form the UAPI protocol uses.
    public init?(hex text: some StringProtocol) {
        self.init(hexBytes: Array(text.utf8))
    }

    /// Parses 64 hexadecimal digits given as UTF-8 bytes.
    public init?(hexBytes: some Collection<UInt8>) {
        guard hexBytes.count == 2 * Key.byteCount else { return nil }
        let storage = SecretStorage()
        var index = hexBytes.startIndex
        for position in 0..<Key.byteCount {
            let highIndex = index
            index = hexBytes.index(after: index)
            guard let high = hexValue(hexBytes[highIndex]), let low = hexValue(hexBytes[index]) else { return nil }
            index = hexBytes.index(after: index)
            storage.buffer[position] = high << 4 | low
        }
        self.storage = storage
    }

    private init(storage: SecretStorage) { self.storage = storage }

    /// A new private key: 32 random bytes from libsodium, clamped as Curve25519 requires (like `wg genkey`).
    public static func generatePrivate() -> Key {
        let key = generatePreshared()
        key.storage.buffer[0] &= 248
        key.storage.buffer[31] = (key.storage.buffer[31] & 127) | 64
        return key
    }

    /// A new preshared key: 32 random bytes (like `wg genpsk`).
    public static func generatePreshared() -> Key {
        precondition(LibSodium.ready, "libsodium failed to initialise")
        let storage = SecretStorage()
        randombytes_buf(storage.buffer.baseAddress!, storage.buffer.count)
        return Key(storage: storage)
    }

    /// The public key of this private key (X25519 with the base point; libsodium clamps the scalar).
    public var publicKey: Key {
        let output = SecretStorage()
        _ = crypto_scalarmult_base(output.buffer.baseAddress!, storage.buffer.baseAddress!)
        return Key(storage: output)
    }

    /// Whether every byte is zero (the "no key" value the kernel and UAPI report).
    public var isZero: Bool { sodium_is_zero(storage.buffer.baseAddress!, Key.byteCount) == 1 }

    /// Standard base64 with padding, 44 characters.
    public var base64: String {
        var output = [CChar](repeating: 0, count: Key.base64Count + 1)
        _ = output.withUnsafeMutableBufferPointer { out in
            sodium_bin2base64(out.baseAddress!, out.count, storage.buffer.baseAddress!, Key.byteCount, sodium_base64_VARIANT_ORIGINAL)
        }
        defer { LibSodium.wipe(&output) }
        return String(decoding: output[0..<Key.base64Count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// 64 lower-case hexadecimal digits, for the UAPI protocol.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(2 * Key.byteCount)
        for byte in storage.buffer.prefix(Key.byteCount) {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        defer { LibSodium.wipe(&text) }
        return String(decoding: text, as: UTF8.self)
    }

    /// `(hidden)`: a key that slips into a log line or an interpolated message never shows its bytes
    /// (it may be a private key). Public keys are printed deliberately, with `base64`.
    public var description: String { "(hidden)" }

    /// Clears this key's bytes with `sodium_memzero` (other copies keep theirs until they go away).
    public mutating func wipe() {
        if isKnownUniquelyReferenced(&storage) {
            sodium_memzero(storage.buffer.baseAddress!, storage.buffer.count)
        } else {
            storage = SecretStorage()
        }
    }

    /// Constant-time comparison (`sodium_memcmp`).
    public static func == (lhs: Key, rhs: Key) -> Bool {
        sodium_memcmp(lhs.storage.buffer.baseAddress!, rhs.storage.buffer.baseAddress!, Key.byteCount) == 0
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage.buffer)[0..<Key.byteCount]))
    }
}

/// Key bytes on the heap, zeroed with `sodium_memzero` when released. Written only while a `Key` is
/// being built (or uniquely held and wiped), so sharing between copies and threads is safe.
private final class SecretStorage: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<UInt8>

    init(capacity: Int = Key.byteCount) {
        buffer = .allocate(capacity: capacity)
        buffer.initialize(repeating: 0)
    }

    deinit {
        sodium_memzero(buffer.baseAddress!, buffer.count)
        buffer.deallocate()
    }
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
