import Agent
import CLinux
import Commands
import Net
import Output
import WireGuard

/// `lanrage genkey`, `lanrage genpsk` and `lanrage pubkey`: the same bytes in and out as
/// `wg genkey`, `wg genpsk` and `wg pubkey`.
enum KeyCommands {
    static let genkey = Command(
        "genkey",
        abstract: "Print a new private key in base64 (like 'wg genkey').",
        discussion: "With --output, the key is written to FILE atomically with mode 0600 instead of being printed.",
        options: [.value("output", short: "o", "FILE", help: "Write the key to FILE (mode 0600, atomic) instead of standard output.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        try emit(Key.generatePrivate(), invocation)
    }

    static let genpsk = Command(
        "genpsk",
        abstract: "Print a new preshared key in base64 (like 'wg genpsk').",
        options: [.value("output", short: "o", "FILE", help: "Write the key to FILE (mode 0600, atomic) instead of standard output.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        try emit(Key.generatePreshared(), invocation)
    }

    static let pubkey = Command(
        "pubkey",
        abstract: "Read a private key in base64 on standard input, print its public key (like 'wg pubkey')."
    ) { (_: Invocation) throws(CommandError) -> ExitCode in
        var input = readStandardInput(limit: 1 << 16)
        defer { Secrets.wipe(&input) }
        guard input.count >= Key.base64Count else {
            StandardStreams.error("lanrage: Key is not the correct length or format\n")
            return .failure
        }
        let isSpace: (UInt8) -> Bool = { [0, 0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C].contains($0) }
        guard input[Key.base64Count...].allSatisfy(isSpace) else {
            StandardStreams.error("lanrage: Trailing characters found after key\n")
            return .failure
        }
        guard var privateKey = Key(base64: String(decoding: input[0..<Key.base64Count], as: UTF8.self)) else {
            StandardStreams.error("lanrage: Key is not the correct length or format\n")
            return .failure
        }
        defer { privateKey.wipe() }
        StandardStreams.out(privateKey.publicKey.base64 + "\n")
        return .success
    }

    private static func emit(_ key: Key, _ invocation: Invocation) throws(CommandError) -> ExitCode {
        var key = key
        defer { key.wipe() }
        if let path = try invocation.value("output", as: String.self) {
            let text = key.base64 + "\n"
            try failing { () throws(SystemError) in try KeyFile.write(text, to: path) }
            return .success
        }
        var info = stat()
        if fstat(STDOUT_FILENO, &info) == 0, info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG), info.st_mode & 0o007 != 0 {
            StandardStreams.error("Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.\n")
        }
        StandardStreams.out(key.base64 + "\n")
        return .success
    }

    /// Reads standard input to its end, at most `limit` bytes (more is kept out: it is trailing garbage).
    private static func readStandardInput(limit: Int) -> [UInt8] {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while data.count <= limit {
            let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress!, $0.count) }
            if count < 0, lanrage_errno() == EINTR { continue }
            if count <= 0 { break }
            data += buffer[0..<count]
        }
        Secrets.wipe(&buffer)
        return data
    }
}
