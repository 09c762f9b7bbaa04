import Net
import Testing

@Suite struct ServerAddressTests {
    @Test func addressesAndNamesAreTold() {
        #expect(ServerAddress("192.0.2.1:3478")?.endpoint == Endpoint("192.0.2.1:3478"))
        #expect(ServerAddress("[2001:db8::1]:3478")?.endpoint == Endpoint("[2001:db8::1]:3478"))
        let named = ServerAddress("Control.Example.NET.:3478")
        #expect(named?.name == "control.example.net" && named?.port == 3478 && named?.endpoint == nil)
        #expect(named?.description == "control.example.net:3478")
        #expect(ServerAddress("localhost:53")?.name == "localhost")
    }

    @Test func whatIsNeitherIsRefused() {
        for text in ["control.example.net", "control.example.net:", "control.example.net:65536", "control.example.net:-1",
                     "-control.example.net:1", "control-.example.net:1", "con_trol.example.net:1", "control..example.net:1",
                     "192.0.2.300:1", "1.2.3.4.5:1", ":53", "exa mple.net:1", "[2001:db8::1:1",
                     String(repeating: "a", count: 64) + ".example:1",
                     Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".") + ":1"] {
            #expect(ServerAddress(text) == nil, "\(text)")
        }
    }
}
