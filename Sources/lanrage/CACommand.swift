import CLinux
import Agent
import Commands
import Net
import Output
import Rendezvous
import WireGuard
import Time

/// `lanrage ca genkey | pubkey | sign | show`: the party's certificate authority, kept by its
/// administrator (offline is best). Its public key is given to the control server and to every
/// agent; a certificate it signs admits one member's WireGuard key with the addresses it grants.
enum CACommand {
    static let command = Command(
        "ca",
        abstract: "The party's certificate authority: make its key, admit members with certificates.",
        discussion: """
            A party is its authority: an Ed25519 key its administrator keeps. 'lanrage ca genkey' makes one, \
            'lanrage ca pubkey' prints the public key the control server (--party NAME=KEY) and every agent \
            ([Party] Authority) are given, and 'lanrage ca sign' admits a member: its WireGuard public key, \
            the overlay addresses and subnets it may use, a validity period. Agents verify every certificate \
            themselves: neither a member nor the control server can add a member or an address.
            """,
        subcommands: [genkey, pubkey, sign, show]
    )

    static let genkey = Command(
        "genkey",
        abstract: "Print a new authority key in base64 (keep it secret: it admits members).",
        options: [.value("output", short: "o", "FILE", help: "Write the key to FILE (mode 0600, atomic) instead of standard output.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        var key = Key.generatePreshared()
        defer { key.wipe() }
        if let path = try invocation.value("output", as: String.self) {
            let text = key.base64 + "\n"
            try failing { () throws(SystemError) in try KeyFile.write(text, to: path) }
        } else {
            StandardStreams.out(key.base64 + "\n")
        }
        return .success
    }

    static let pubkey = Command(
        "pubkey",
        abstract: "Read an authority key on standard input, print its public key (for --party and [Party] Authority)."
    ) { (_: Invocation) throws(CommandError) -> ExitCode in
        var input = [UInt8](repeating: 0, count: 256)
        let count = read(STDIN_FILENO, &input, input.count)
        defer { Secrets.wipe(&input) }
        guard count > 0, var seed = Key(base64: String(decoding: input[..<count], as: UTF8.self).withoutASCIISpaces) else {
            StandardStreams.error("lanrage: an authority key is 44 characters of base64, as 'lanrage ca genkey' prints\n")
            return .dataError
        }
        defer { seed.wipe() }
        var pair = Crypto.signingKeyPair(seed: seed.bytes)
        defer { Crypto.wipe(&pair.secretKey) }
        StandardStreams.out(Crypto.base64(pair.publicKey) + "\n")
        return .success
    }

    static let sign = Command(
        "sign",
        abstract: "Admit a member: print a certificate for its WireGuard public key, signed by the authority.",
        discussion: """
            The member's agent names the certificate file in [Party] Certificate. Its addresses are its overlay \
            addresses with the overlay network's length (e.g. 100.64.0.2/24): the agent gives them to its \
            interface, and peers route each as a host address to it. Subnets are networks behind the member \
            that peers may route to it (a LAN behind a router).
            """,
        options: [
            .value("key", "FILE", help: "The authority key (mode 0600)."),
            .value("party", "NAME", help: "The party's name, as the control server and agents know it."),
            .value("member", "PUBKEY", help: "The member's WireGuard public key (base64, 'lanrage pubkey' prints it)."),
            .repeated("address", "PREFIX", help: "An overlay address of the member, with the network's length."),
            .repeated("subnet", "PREFIX", help: "A network behind the member that it routes."),
            .value("name", "NAME", help: "A label for logs and status (letters, digits, '.', '_', '-').", default: "none"),
            .value("days", "N", help: "How long the certificate is valid.", default: "365"),
            .value("output", short: "o", "FILE", help: "Write the certificate to FILE instead of standard output."),
        ]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        guard let keyPath = try invocation.value("key", as: String.self) else { throw invocation.usageError("missing --key FILE") }
        guard let party = try invocation.value("party", as: String.self), !party.isEmpty, party.utf8.count <= 64 else {
            throw invocation.usageError("missing --party NAME (1 to 64 bytes)")
        }
        guard let memberText = try invocation.value("member", as: String.self) else { throw invocation.usageError("missing --member PUBKEY") }
        guard let memberKey = Key(base64: memberText), let member = MemberKey(memberKey.bytes) else {
            throw invocation.usageError("--member '\(memberText)' is not a WireGuard public key (44 characters of base64)")
        }
        let addresses = try invocation.values("address", as: IPPrefix.self)
        let subnets = try invocation.values("subnet", as: IPPrefix.self)
        guard !addresses.isEmpty else { throw invocation.usageError("missing --address PREFIX (the member's overlay address)") }
        guard addresses.count + subnets.count <= MemberCertificate.maxPrefixes else {
            throw invocation.usageError("at most \(MemberCertificate.maxPrefixes) addresses and subnets in all")
        }
        for subnet in subnets where subnet.network != subnet {
            throw invocation.usageError("--subnet \(subnet) has host bits set (did you mean \(subnet.network)?)")
        }
        let name = try invocation.value("name", as: String.self) ?? ""
        guard name.utf8.count <= MemberCertificate.maxName, name.utf8.allSatisfy(MemberCertificate.isNameByte) else {
            throw invocation.usageError("--name must be at most \(MemberCertificate.maxName) letters, digits, '.', '_' or '-'")
        }
        let days = try invocation.value("days", as: Int.self) ?? 365
        guard (1...36_500).contains(days) else { throw invocation.usageError("--days must be from 1 to 36500") }
        var seedText = try failing { () throws(SecretFile.Problem) in try SecretFile.read(keyPath) }
        defer { Secrets.wipe(&seedText) }
        guard var seed = Key(base64: String(decoding: seedText, as: UTF8.self)) else {
            throw CommandError("\(keyPath) does not hold an authority key (44 characters of base64, as 'lanrage ca genkey' prints)",
                               exitCode: .dataError)
        }
        defer { seed.wipe() }
        var pair = Crypto.signingKeyPair(seed: seed.bytes)
        defer { Crypto.wipe(&pair.secretKey) }
        // Valid from a minute ago: a member whose clock is a little behind is not refused.
        let now = WallClock.unixSeconds()
        let certificate: MemberCertificate
        do throws(MemberCertificate.Problem) {
            certificate = try MemberCertificate.issue(party: Keys.partyID(name: party), member: member, notBefore: now - 60,
                                                      notAfter: now + UInt64(days) * 86_400, addresses: addresses, subnets: subnets,
                                                      name: name, authority: pair.secretKey)
        } catch {
            throw invocation.usageError("\(error)")
        }
        let text = Crypto.base64(certificate.encoded) + "\n"
        if let path = try invocation.value("output", as: String.self) {
            try failing { () throws(SystemError) in try KeyFile.write(text, to: path) }
        } else {
            StandardStreams.out(text)
        }
        return .success
    }

    static let show = Command(
        "show",
        abstract: "Print a certificate's fields; with --authority and --party, check it too (exit 65 when it does not verify).",
        options: [
            .value("authority", "PUBKEY", help: "The authority's public key to verify against."),
            .value("party", "NAME", help: "The party it must be for (with --authority)."),
        ],
        arguments: [Argument("FILE", help: "The certificate file.")]
    ) { (invocation: Invocation) throws(CommandError) -> ExitCode in
        guard let path = try invocation.argument("FILE", as: String.self) else { throw invocation.usageError("missing FILE") }
        let bytes = try failing { () throws(CertificateFile.Problem) in try CertificateFile.read(path) }
        let certificate: MemberCertificate
        do throws(MemberCertificate.Problem) { certificate = try MemberCertificate(decoding: bytes) } catch {
            StandardStreams.error("lanrage: \(path): \(error)\n")
            return .dataError
        }
        StandardStreams.out("""
            member: \(Crypto.base64(certificate.member.bytes)) (\(certificate.member))
            name: \(certificate.name.isEmpty ? "-" : certificate.name)
            addresses: \(certificate.addresses.map { "\($0)" }.joined(separator: ", "))
            subnets: \(certificate.subnets.isEmpty ? "-" : certificate.subnets.map { "\($0)" }.joined(separator: ", "))
            valid: \(certificate.notBefore) to \(certificate.notAfter) (s since 1970)

            """)
        guard let authorityText = try invocation.value("authority", as: String.self) else { return .success }
        guard let party = try invocation.value("party", as: String.self) else { throw invocation.usageError("--authority needs --party NAME") }
        guard let authority = Crypto.bytes(base64: authorityText, limit: 32), authority.count == 32 else {
            throw invocation.usageError("--authority '\(authorityText)' is not a public key (44 characters of base64)")
        }
        do throws(MemberCertificate.Problem) {
            _ = try MemberCertificate.verified(bytes, authority: authority, party: Keys.partyID(name: party), now: WallClock.unixSeconds())
            StandardStreams.out("verified: signed by the authority, for party \(party), valid now\n")
            return .success
        } catch {
            StandardStreams.error("lanrage: \(path): \(error)\n")
            return .dataError
        }
    }
}
