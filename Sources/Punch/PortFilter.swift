import CLinux

/// A classic BPF program for a raw UDP socket that keeps only the datagrams LANrage exchanges on
/// the WireGuard port: destination port = the port, not a fragment, and a payload that is a STUN
/// message (magic cookie at bytes 4–7) or starts with the punch prefix `LANRAGE_`. WireGuard's own
/// traffic never reaches user space.
///
/// On `AF_INET` raw sockets the packet starts at the IP header, whose length varies: the program
/// loads 4·IHL into X (`BPF_LDX|BPF_B|BPF_MSH`) and reads the UDP header and payload relative to it.
/// On `AF_INET6` raw sockets it starts at the UDP header (X = 0), and the kernel has already
/// reassembled fragments.
public struct PortFilter {
    public let port: UInt16
    public let instructions: [sock_filter]

    /// The STUN magic cookie (RFC 8489).
    public static let stunMagicCookie: UInt32 = 0x2112_A442
    /// `LANR`, `AGE_`: the first eight bytes of every punch message.
    static let punchPrefix: (UInt32, UInt32) = (0x4C41_4E52, 0x4147_455F)

    public init(port: UInt16, ipv6: Bool = false) {
        self.port = port
        let accept: UInt32 = 0xFFFF, reject: UInt32 = 0
        func statement(_ code: Int32, _ k: UInt32) -> sock_filter {
            sock_filter(code: UInt16(code), jt: 0, jf: 0, k: k)
        }
        func jump(_ code: Int32, _ k: UInt32, _ jt: UInt8, _ jf: UInt8) -> sock_filter {
            sock_filter(code: UInt16(code), jt: jt, jf: jf, k: k)
        }
        // IPv6: X = 0, then the same program from its UDP header on (index 3 of the IPv4 one).
        let start = ipv6 ? [statement(BPF_LDX | BPF_IMM, 0)] : [
            /* 0 */ statement(BPF_LD | BPF_H | BPF_ABS, 6),                  // flags and fragment offset
            /* 1 */ jump(BPF_JMP | BPF_JSET | BPF_K, 0x3FFF, 10, 0),         // a fragment: reject
            /* 2 */ statement(BPF_LDX | BPF_B | BPF_MSH, 0),                 // X = IP header length
        ]
        instructions = start + [
            /* 3 */ statement(BPF_LD | BPF_H | BPF_IND, 2),                  // UDP destination port
            /* 4 */ jump(BPF_JMP | BPF_JEQ | BPF_K, UInt32(port), 0, 7),
            /* 5 */ statement(BPF_LD | BPF_W | BPF_IND, 12),                 // payload bytes 4–7
            /* 6 */ jump(BPF_JMP | BPF_JEQ | BPF_K, PortFilter.stunMagicCookie, 4, 0),
            /* 7 */ statement(BPF_LD | BPF_W | BPF_IND, 8),                  // payload bytes 0–3
            /* 8 */ jump(BPF_JMP | BPF_JEQ | BPF_K, PortFilter.punchPrefix.0, 0, 3),
            /* 9 */ statement(BPF_LD | BPF_W | BPF_IND, 12),                 // payload bytes 4–7
            /* 10 */ jump(BPF_JMP | BPF_JEQ | BPF_K, PortFilter.punchPrefix.1, 0, 1),
            /* 11 */ statement(BPF_RET | BPF_K, accept),
            /* 12 */ statement(BPF_RET | BPF_K, reject),
        ]
    }
}
