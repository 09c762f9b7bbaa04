/// Interface names: 1 to 15 bytes, no '/', no whitespace, not "." or "..".
public enum InterfaceName {
    public static func validate(_ name: String) throws(WireGuardError) {
        let bytes = Array(name.utf8)
        guard (1...15).contains(bytes.count), name != ".", name != "..",
              !bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: ":") })
        else {
            throw WireGuardError(.invalidInput, "invalid interface name '\(name)' (1 to 15 characters, no '/', ':' or spaces)")
        }
    }
}
