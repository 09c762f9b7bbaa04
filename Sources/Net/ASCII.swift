/// ASCII-only text helpers. `String.lowercased()` and `Character`'s Unicode properties would bring
/// Unicode's case-mapping and property tables (tens of kilobytes) into the binary, and every
/// keyword, key, name and number LANrage reads is ASCII.
public extension StringProtocol {
    /// The text with A–Z turned into a–z, every other byte as it is.
    var asciiLowercased: String { String(decoding: utf8.map { $0.asciiLowercased }, as: UTF8.self) }

    /// The text with its first byte turned into A–Z when it is a–z.
    var asciiCapitalized: String {
        String(decoding: utf8.enumerated().map { $0 == 0 && $1 >= 97 && $1 <= 122 ? $1 - 32 : $1 }, as: UTF8.self)
    }

    /// The text without its ASCII spaces, tabs and line ends.
    var withoutASCIISpaces: String { String(decoding: utf8.filter { !$0.isASCIISpace }, as: UTF8.self) }
}

public extension ArraySlice<UInt8> {
    /// Without leading and trailing ASCII spaces, tabs and line ends.
    var trimmingASCIISpaces: ArraySlice<UInt8> {
        let start = firstIndex { !$0.isASCIISpace } ?? endIndex
        let end = self[start...].lastIndex { !$0.isASCIISpace }.map { $0 + 1 } ?? start
        return self[start..<end]
    }

    /// The bytes as text with A–Z turned into a–z, every other byte as it is.
    var asciiLowercased: String { String(decoding: map { $0.asciiLowercased }, as: UTF8.self) }
}

public extension UInt8 {
    /// A–Z turned into a–z, every other byte as it is.
    var asciiLowercased: UInt8 { self >= 0x41 && self <= 0x5A ? self + 0x20 : self }

    /// Space, tab, carriage return or line feed.
    var isASCIISpace: Bool { self == 0x20 || self == 0x09 || self == 0x0D || self == 0x0A }

    /// 0–9.
    var isASCIIDigit: Bool { self >= 0x30 && self <= 0x39 }
}
