import Foundation
import Net
import Rendezvous
import Testing
@testable import Agent
import Time

/// The agent's configuration file: what it accepts, and the message it gives for what it refuses.
@Suite struct AgentConfigurationTests {
    let directory: URL
    let keyFile: URL
    let certificateFile: URL
    static let authority = Crypto.signingKeyPair(seed: [UInt8](repeating: 0xCA, count: 32))
    static let publicKey = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    static let controlKey = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("agent-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        keyFile = directory.appendingPathComponent("private.key")
        certificateFile = directory.appendingPathComponent("member.cert")
        try "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n".write(to: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile.path, 0o600)
        try Self.certificate().write(to: certificateFile, atomically: true, encoding: .utf8)
    }

    /// A certificate for the test key in party "home": 100.64.0.1/24 and 100.64.9.1/24.
    static func certificate(member: String = publicKey, secretKey: [UInt8] = authority.secretKey, party: String = "home") throws -> String {
        let now = WallClock.unixSeconds()
        let certificate = try MemberCertificate.issue(party: Keys.partyID(name: party), member: MemberKey(Crypto.bytes(base64: member)!)!,
                                                      notBefore: now - 60, notAfter: now + 3600,
                                                      addresses: [IPPrefix("100.64.0.1/24")!, IPPrefix("100.64.9.1/24")!], subnets: [],
                                                      name: "test", authority: secretKey)
        return Crypto.base64(certificate.encoded) + "\n"
    }

    func parse(_ text: String, othersCanRead: Bool = false) throws -> AgentConfiguration {
        try AgentConfiguration(parsing: ArraySlice(Array(text.utf8)), file: "agent.conf", othersCanRead: othersCanRead)
    }

    var minimal: String {
        """
        [Interface]
        PrivateKeyFile = \(keyFile.path)

        [Party]
        Control = 192.0.2.1:3478
        ControlKey = \(Self.controlKey)
        Name = home
        Authority = \(Crypto.base64(Self.authority.publicKey))
        Certificate = \(certificateFile.path)
        """
    }

    @Test func aMinimalFileGetsTheDefaults() throws {
        let configuration = try parse(minimal)
        #expect(configuration.interfaceName == "lanrage0")
        #expect(configuration.listenPort == 51820)
        #expect(configuration.mtu == nil, "the path's MTU less 80, chosen at start")
        #expect(configuration.addresses.map(\.description) == ["100.64.0.1/24", "100.64.9.1/24"], "the certificate's addresses")
        #expect(configuration.certificate.name == "test")
        #expect(configuration.privateKey.publicKey.base64 == "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
        #expect(configuration.stun.map(\.description) == ["192.0.2.1:3478"], "the control server answers STUN")
        #expect(configuration.relaysEnabled && configuration.backend == nil)
        #expect(configuration.portMapping == [.pcp, .natPMP, .upnp], "PCP, then NAT-PMP, then UPnP-IGD")
        #expect(configuration.statusSocket == "/var/run/lanrage/agent.sock")
        #expect(configuration.timings.punchPackets == 5 && configuration.timings.punchInterval == .milliseconds(100))
    }

    @Test func everySectionAndKey() throws {
        let text = minimal.replacingOccurrences(of: "PrivateKeyFile = \(keyFile.path)", with: """
            PrivateKeyFile = \(keyFile.path)
            Address = 100.64.9.1/24   # one of the certificate's two
            ListenPort = 41641
            Name = lr-home
            """) + """

            [Relay]
            Enabled = no
            Prefer = 192.0.2.20:4000
            Prefer = 192.0.2.21:4000

            [Agent]
            Backend = uapi
            StatusSocket = /var/run/lanrage/agent.sock
            STUN = 192.0.2.9:3478
            PortMapping = natpmp
            PersistentKeepalive = 15s
            PunchPackets = 3
            PunchInterval = 50ms
            PunchAckTimeout = 1s
            PunchAttempts = 4
            DetectionTimeout = 2s
            DirectConfirm = 5
            RelayConfirm = 20s
            LivenessPoll = 5s
            UpgradeBase = 1m
            UpgradeMax = 1h
            """
        let configuration = try parse(text)
        #expect(configuration.addresses.map(\.description) == ["100.64.9.1/24"])
        #expect(configuration.listenPort == 41641 && configuration.interfaceName == "lr-home")
        #expect(!configuration.relaysEnabled)
        #expect(configuration.preferredRelays.map(\.description) == ["192.0.2.20:4000", "192.0.2.21:4000"])
        #expect(configuration.backend == .uapi && configuration.statusSocket == "/var/run/lanrage/agent.sock")
        #expect(configuration.stun.map(\.description) == ["192.0.2.9:3478"])
        #expect(configuration.portMapping == [.natPMP])
        #expect(try parse(minimal + "\n[Agent]\nPortMapping = off\n").portMapping.isEmpty)
        #expect(try parse(minimal + "\n[Agent]\nPortMapping = UPnP, pcp\n").portMapping == [.upnp, .pcp])
        let timings = configuration.timings
        #expect(timings.persistentKeepalive == .seconds(15) && timings.punchPackets == 3 && timings.punchInterval == .milliseconds(50))
        #expect(timings.punchAckTimeout == .seconds(1) && timings.punchAttempts == 4 && timings.detection == .seconds(2))
        #expect(timings.directConfirm == .seconds(5) && timings.relayConfirm == .seconds(20) && timings.livenessPoll == .seconds(5))
        #expect(timings.upgradeBase == .seconds(60) && timings.upgradeMax == .seconds(3600))
    }

    @Test func theMTUIsTakenOrFollowsThePath() throws {
        #expect(try parse(minimal.replacingOccurrences(of: "[Interface]\n", with: "[Interface]\nMTU = 1380\n")).mtu == 1380)
        // As wg-quick: the path's MTU less 80 bytes, IPv6's 1280 at the least, 1420 when unknown.
        #expect(AgentConfiguration.defaultMTU(path: 1500) == 1420)
        #expect(AgentConfiguration.defaultMTU(path: 1492) == 1412, "PPPoE")
        #expect(AgentConfiguration.defaultMTU(path: 9000) == 8920)
        #expect(AgentConfiguration.defaultMTU(path: 1300) == 1280)
        #expect(AgentConfiguration.defaultMTU(path: nil) == 1420)
    }

    @Test func durations() {
        #expect(AgentConfiguration.duration("250ms") == .milliseconds(250))
        #expect(AgentConfiguration.duration("2s") == .seconds(2))
        #expect(AgentConfiguration.duration("5m") == .seconds(300))
        #expect(AgentConfiguration.duration("1h") == .seconds(3600))
        #expect(AgentConfiguration.duration("7") == .seconds(7))
        for bad in ["", "s", "-1s", "2 s", "1.5s", "99999999999999999999ms", "ten"] {
            #expect(AgentConfiguration.duration(bad) == nil, "\(bad)")
        }
    }

    @Test(arguments: [
        ("[Peer]\nPublicKey = x", "agent.conf:1: unknown section [peer]"),
        ("Address = 100.64.0.1/32", "agent.conf:1: 'Address' before any section"),
        ("[Interface]\nPrivateKey = secret-material-here", "agent.conf:2: PrivateKey is not a valid key"),
        ("[Interface]\nthis is not a setting", "agent.conf:2: expected 'Key = Value' or a [Section]"),
        ("[Interface]\nListenPort = 70000", "agent.conf:2: ListenPort '70000' is not a port number"),
        ("[Interface]\nMTU = 1279", "agent.conf:2: MTU '1279' is not a number from 1280 to 9000"),
        ("[Interface]\nMTU = 9001", "agent.conf:2: MTU '9001' is not a number from 1280 to 9000"),
        ("[Interface]\nMTU = 1420 bytes", "agent.conf:2: MTU '1420 bytes' is not a number from 1280 to 9000"),
        ("[Interface]\nAddress = 100.64.0.300/32", "agent.conf:2: Address '100.64.0.300/32' is not an address"),
        ("[Interface]\nName = this-name-is-far-too-long", "agent.conf:2: Name:"),
        ("[Party]\nControl = control.example", "agent.conf:2: Control 'control.example' is not IP:PORT or HOSTNAME:PORT"),
        ("[Party]\nControl = control_server:3478", "agent.conf:2: Control 'control_server:3478' is not IP:PORT or HOSTNAME:PORT"),
        ("[Agent]\nSTUN = 192.0.2.300:3478", "agent.conf:2: STUN '192.0.2.300:3478' is not IP:PORT or HOSTNAME:PORT"),
        ("[Agent]\nBackend = kernel-ish", "agent.conf:2: Backend 'kernel-ish' is not auto, netlink or uapi"),
        ("[Agent]\nPortMapping = miniupnp", "agent.conf:2: PortMapping 'miniupnp' is not off or a list of pcp, natpmp and upnp"),
        ("[Agent]\nPunchInterval = soon", "agent.conf:2: PunchInterval 'soon' is not a duration"),
        ("[Agent]\nPunchPackets = 0", "agent.conf:2: PunchPackets '0' is not a number from 1 to 1000"),
        ("[Agent]\nStatusSocket = relative.sock", "agent.conf:2: StatusSocket must be an absolute path"),
        ("[Agent]\nColour = blue", "agent.conf:2: unknown key 'Colour' in [Agent]"),
        ("[Relay]\nEnabled = maybe", "agent.conf:2: Enabled 'maybe' is not yes or no"),
        ("[Party]\nName = a\nName = b", "agent.conf:3: 'Name' given twice in [party]"),
    ])
    func refusedLinesAreNamed(_ text: String, _ message: String) {
        #expect {
            try parse(text)
        } throws: { error in
            "\(error)".hasPrefix(message)
        }
    }

    @Test func missingSettingsAreNamed() throws {
        for (key, message) in [("Authority", "[Party] needs Authority"), ("Certificate", "[Party] needs Certificate"),
                               ("ControlKey", "[Party] needs ControlKey")] {
            let without = minimal.split(separator: "\n").filter { !$0.hasPrefix("\(key) =") }.joined(separator: "\n")
            #expect(throws: AgentConfiguration.Problem.self) { try parse(without) }
            #expect { try parse(without) } throws: { "\($0)".contains(message) }
        }
        let withoutControl = minimal.replacingOccurrences(of: "Control = 192.0.2.1:3478\n", with: "")
        #expect { try parse(withoutControl) } throws: { "\($0)".contains("[Party] needs Control") }
        let withoutKey = minimal.replacingOccurrences(of: "PrivateKeyFile = \(keyFile.path)\n", with: "")
        #expect { try parse(withoutKey) } throws: { "\($0)".contains("needs PrivateKeyFile") }
    }

    /// The certificate must be this member's, for this party, from this authority; an Address must be
    /// one it grants; a party secret is refused with what replaces it.
    @Test func theCertificateIsCheckedAtLoad() throws {
        let other = Crypto.signingKeyPair(seed: [UInt8](repeating: 0x66, count: 32))
        let cases: [(String, String)] = [
            (try Self.certificate(secretKey: other.secretKey), "Certificate: certificate not signed by the party's authority"),
            (try Self.certificate(member: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), "Certificate: certificate of another member's key"),
            (try Self.certificate(party: "work"), "Certificate: certificate of another party"),
        ]
        for (certificate, message) in cases {
            try certificate.write(to: certificateFile, atomically: true, encoding: .utf8)
            #expect { try parse(minimal) } throws: { "\($0)".contains(message) }
        }
        try "not base64 at all".write(to: certificateFile, atomically: true, encoding: .utf8)
        #expect { try parse(minimal) } throws: { "\($0)".contains("does not hold a certificate") }
        try Self.certificate().write(to: certificateFile, atomically: true, encoding: .utf8)
        let ungranted = minimal.replacingOccurrences(of: "PrivateKeyFile = \(keyFile.path)", with: "PrivateKeyFile = \(keyFile.path)\nAddress = 100.64.0.2/24")
        #expect { try parse(ungranted) } throws: { "\($0)".contains("Address 100.64.0.2/24 is not granted by the certificate") }
        let secret = minimal + "\nSecretFile = /etc/lanrage/party.secret"
        #expect { try parse(secret) } throws: { "\($0)".contains("SecretFile is no longer used: members are admitted by certificate") }
    }

    @Test func keysStayPrivate() throws {
        let inline = minimal.replacingOccurrences(of: "PrivateKeyFile = \(keyFile.path)", with: "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
        #expect(try parse(inline).privateKey.publicKey.base64 == "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
        #expect { try parse(inline, othersCanRead: true) } throws: { "\($0)".contains("PrivateKey in a file others can read: chmod 600") }
        chmod(keyFile.path, 0o644)
        #expect { try parse(minimal) } throws: { "\($0)".contains("is readable by others: chmod 600") }
        // No message carries the key.
        #expect { try parse("[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm!") } throws: {
            !"\($0)".contains("yAnz5TF")
        }
    }

    @Test func loadReadsTheFileAndChecksItsMode() throws {
        let file = directory.appendingPathComponent("agent.conf")
        try minimal.write(to: file, atomically: true, encoding: .utf8)
        #expect(try AgentConfiguration.load(file.path).party == "home")
        #expect { try AgentConfiguration.load(directory.appendingPathComponent("missing.conf").path) } throws: {
            "\($0)".contains("cannot read config") && "\($0)".contains("No such file") && ($0 as? AgentConfiguration.Problem)?.exitCode == .noInput
        }
        #expect { try AgentConfiguration.load(directory.path) } throws: {
            "\($0)".contains("is not a regular file") && ($0 as? AgentConfiguration.Problem)?.exitCode == .config
        }
    }
}
