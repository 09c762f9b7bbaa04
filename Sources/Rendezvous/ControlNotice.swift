/// The control server's two unauthenticated answers, which change no state. They are tiny (never
/// larger than what they answer) and say only what a client needs to go on:
///
///     cookie:   'L' 'C' 2 0x87 | nonce u64 (of the register it answers) | cookie (16)   = 28 bytes
///     version:  'L' 'C' v 0x7F | lowest version u8 | highest version u8                  = 6 bytes
///
/// A server under load answers a register from an unknown member with a cookie instead of doing the
/// work (an X25519 and a signature check): the member sends the register again with the cookie,
/// which proves it receives at its source address — spoofed sources never see their cookie
/// (WireGuard's cookie reply is the model). A datagram of another protocol version gets the version
/// notice, so that both sides can say "protocol version" instead of dropping each other in silence.
public enum ControlNotice: Equatable, Sendable {
    case cookie(nonce: UInt64, cookie: [UInt8])
    case version(lowest: UInt8, highest: UInt8)

    public static let cookieCount = 16
    public static let cookieType: UInt8 = 0x87
    public static let versionType: UInt8 = 0x7F

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 28)
        writer.u8(ControlMessage.magic.0); writer.u8(ControlMessage.magic.1)
        switch self {
        case .cookie(let nonce, let cookie):
            writer.u8(ControlMessage.version); writer.u8(Self.cookieType); writer.u64(nonce)
            writer.raw(cookie.count == Self.cookieCount ? cookie : [UInt8](repeating: 0, count: Self.cookieCount))
        case .version(let lowest, let highest):
            writer.u8(ControlMessage.version); writer.u8(Self.versionType); writer.u8(lowest); writer.u8(highest)
        }
        return writer.bytes
    }

    /// The notice in `bytes`, or nil when it is none. A version notice is recognised whatever its
    /// version byte (it is that byte's point); a cookie only in this protocol version.
    public init?(decoding bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 4, bytes[0] == ControlMessage.magic.0, bytes[1] == ControlMessage.magic.1 else { return nil }
        if bytes[3] == Self.versionType, bytes.count == 6 {
            self = .version(lowest: bytes[4], highest: bytes[5])
        } else if bytes[2] == ControlMessage.version, bytes[3] == Self.cookieType, bytes.count == 12 + Self.cookieCount {
            var reader = ByteReader(bytes, offset: 4)
            guard let nonce = try? reader.u64(), let cookie = try? reader.raw(Self.cookieCount) else { return nil }
            self = .cookie(nonce: nonce, cookie: cookie)
        } else {
            return nil
        }
    }
}
