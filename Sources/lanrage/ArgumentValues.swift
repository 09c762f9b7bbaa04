import Commands
import Net

extension Endpoint: ArgumentValue {
    public init?(argument: String) { self.init(argument) }
    public static var expectation: String { "IP:PORT, e.g. 192.0.2.1:3478 or [2001:db8::1]:3478" }
}

extension ServerAddress: ArgumentValue {
    public init?(argument: String) { self.init(argument) }
    public static var expectation: String { "IP:PORT or HOSTNAME:PORT, e.g. 192.0.2.1:3478 or stun.example.net:3478" }
}

extension IPPrefix: ArgumentValue {
    public init?(argument: String) { self.init(argument) }
    public static var expectation: String { "an address with a prefix length, e.g. 100.64.0.2/24" }
}
