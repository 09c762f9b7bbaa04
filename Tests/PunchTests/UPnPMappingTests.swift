import Net
import Time
import Testing
@testable import Punch

/// UPnP-IGD in the port-mapping machine, in virtual time, against answers as miniupnpd 2.3.1 sends
/// them (its SSDP answer, its device description cut to the elements that matter, its SOAP answers
/// and faults).
@Suite struct UPnPMappingTests {
    static let gateway = IPAddress.v4(IPv4Address(203, 0, 113, 5))
    static let location = UPnPURL(endpoint: Endpoint(gateway, 37771), path: Array("/rootDesc.xml".utf8))
    static let serviceType = Array("urn:schemas-upnp-org:service:WANIPConnection:2".utf8)
    static let service = UPnPService(control: UPnPURL(endpoint: Endpoint(gateway, 37771), path: Array("/ctl/IPConn".utf8)), type: serviceType)

    static func machine(_ protocols: [PortMappingProtocol] = [.upnp]) -> PortMapping {
        PortMapping(client: .v4(IPv4Address(203, 0, 113, 6)), gateway: gateway, internalPort: 51820, protocols: protocols, nonce: [UInt8](1...12))
    }

    static func ssdpAnswer(location: String = "http://203.0.113.5:37771/rootDesc.xml") -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nLOCATION: \(location)\r\n\r\n".utf8)
    }

    static func http(_ body: String, status: String = "200 OK") -> [UInt8] {
        Array("HTTP/1.1 \(status)\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    /// miniupnpd's description: services of the root device and the WAN device come first.
    static let description = """
        <?xml version="1.0"?>
        <root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>\
        <serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service>\
        </serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType><serviceList><service>\
        <serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><controlURL>/ctl/CmnIfCfg</controlURL></service>\
        </serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType><serviceList><service>\
        <serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>\
        <SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service></serviceList>\
        </device></deviceList></device></deviceList></device></root>
        """

    static func soap(_ inner: String) -> String {
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\(inner)</s:Body></s:Envelope>\r\n"
    }

    static let externalAddress = http(soap("""
        <u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">\
        <NewExternalIPAddress>198.51.100.6</NewExternalIPAddress></u:GetExternalIPAddressResponse>
        """))
    static let added = http(soap("<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"/>"))

    static func fault(_ code: Int) -> [UInt8] {
        http(soap("""
            <s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>\
            <UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>\(code)</errorCode><errorDescription>x</errorDescription>\
            </UPnPError></detail></s:Fault>
            """), status: "500 Internal Server Error")
    }

    @Test func aGatewayIsSearchedDescribedAndAskedAndTheMappingRenewedAndGivenBack() throws {
        var mapping = Self.machine()
        let search = try #require(mapping.start(now: 0).send)
        #expect(search == .upnpSearch && search.transport == .datagram(port: 1900))
        #expect(String(decoding: search.encoded, as: UTF8.self).hasPrefix("M-SEARCH * HTTP/1.1\r\n"))
        let describe = mapping.received(Self.ssdpAnswer(), now: 1).send
        #expect(describe == .upnpDescribe(Self.location) && describe?.transport == .http(Endpoint(Self.gateway, 37771)))
        let get = String(decoding: describe?.encoded ?? [], as: UTF8.self)
        #expect(get == "GET /rootDesc.xml HTTP/1.1\r\nHost: 203.0.113.5:37771\r\nConnection: close\r\n\r\n")
        let ask = mapping.answered(Self.http(Self.description), now: 2).send
        #expect(ask == .upnpExternalAddress(Self.service), "the WAN connection's service, not the first one listed")
        let map = try #require(mapping.answered(Self.externalAddress, now: 3).send)
        let text = String(decoding: map.encoded, as: UTF8.self)
        #expect(text.hasPrefix("POST /ctl/IPConn HTTP/1.1\r\n") && text.contains("SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\n"))
        #expect(text.contains("<NewExternalPort>51820</NewExternalPort><NewProtocol>UDP</NewProtocol><NewInternalPort>51820</NewInternalPort>"
            + "<NewInternalClient>203.0.113.6</NewInternalClient>"), "\(text)")
        let body = text.split(separator: "\r\n\r\n", maxSplits: 1).last ?? ""
        #expect(text.contains("Content-Length: \(body.utf8.count)\r\n"))
        let granted = mapping.answered(Self.added, now: 4)
        #expect(granted.changed)
        #expect(mapping.mapped == PortMapping.Mapped(protocolUsed: .upnp, external: Endpoint(.v4(IPv4Address(198, 51, 100, 6)), 51820),
                                                        lifetime: 7200, expires: 4 + 7200 * 1_000_000_000))
        let renewal = mapping.timer(now: try #require(mapping.deadline)).send
        #expect(renewal == .upnpExternalAddress(Self.service), "a renewal asks the address again, no new search")
        #expect(mapping.stop() == [.upnpUnmap(Self.service, externalPort: 51820)])
    }

    /// Error 718: another host holds the port — a second one, from the nonce. Error 725: the
    /// gateway keeps only permanent mappings — one is asked for.
    @Test func aConflictTakesASecondPortAndAPermanentOnlyGatewayGetsAPermanentMapping() throws {
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        _ = mapping.received(Self.ssdpAnswer(), now: 0)
        _ = mapping.answered(Self.http(Self.description), now: 0)
        _ = mapping.answered(Self.externalAddress, now: 0)
        let second = mapping.answered(Self.fault(718), now: 1).send
        let port: UInt16 = 1024 + (1 << 8 | 2) % 64512
        #expect(second == .upnpMap(Self.service, externalPort: port, client: .v4(IPv4Address(203, 0, 113, 6)), internalPort: 51820, lifetime: 7200))
        let permanent = mapping.answered(Self.fault(725), now: 2).send
        #expect(permanent == .upnpMap(Self.service, externalPort: port, client: .v4(IPv4Address(203, 0, 113, 6)), internalPort: 51820, lifetime: 0))
        _ = mapping.answered(Self.added, now: 3)
        #expect(mapping.mapped?.external.port == port && mapping.deadline == 3 + 3600 * 1_000_000_000, "renewed all the same")
        let refused = mapping.answered(Self.fault(501), now: 4)
        #expect(refused == PortMapping.Output(), "no answer awaited: ignored")
    }

    @Test func aRefusalOrABrokenConnectionMovesOnAndForgetsTheService() throws {
        var mapping = Self.machine([.upnp, .pcp])
        _ = mapping.start(now: 0)
        _ = mapping.received(Self.ssdpAnswer(), now: 0)
        _ = mapping.answered(Self.http(Self.description), now: 0)
        _ = mapping.answered(Self.externalAddress, now: 0)
        let next = mapping.answered(Self.fault(606), now: 1).send
        #expect(next?.transport == .datagram(port: 5351), "refused: PCP next")
        #expect(mapping.lastRefusal?.0 == .upnp && mapping.lastRefusal?.1 == 606)

        var broken = Self.machine([.upnp, .pcp])
        _ = broken.start(now: 0)
        _ = broken.received(Self.ssdpAnswer(), now: 0)
        #expect(broken.failed(now: 1).send?.transport == .datagram(port: 5351), "connection refused: PCP next")
        let garbled = Self.machine([.upnp, .pcp])
        var cut = garbled
        _ = cut.start(now: 0)
        _ = cut.received(Self.ssdpAnswer(), now: 0)
        #expect(cut.answered(Array("HTTP/1.1 200 OK\r\n".utf8), now: 1).send?.transport == .datagram(port: 5351), "a cut answer fails at once")
        var silent = garbled
        _ = silent.start(now: 0)
        _ = silent.received(Self.ssdpAnswer(), now: 0)
        let deadline = try #require(silent.deadline)
        #expect(deadline == 3_000_000_000, "an HTTP request is sent once, with 3 s for its answer")
        #expect(silent.timer(now: deadline).send?.transport == .datagram(port: 5351))
        // Every protocol failed: the next round searches again.
        var again = Self.machine()
        _ = again.start(now: 0)
        _ = again.received(Self.ssdpAnswer(), now: 0)
        _ = again.answered(Self.http(Self.description), now: 0)
        _ = again.failed(now: 1)
        #expect(again.timer(now: try #require(again.deadline)).send == .upnpSearch)
    }

    @Test func aDescriptionElsewhereThanOnTheGatewayIsNotFetched() {
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        #expect(mapping.received(Self.ssdpAnswer(location: "http://198.51.100.9:80/desc.xml"), now: 1) == PortMapping.Output())
        #expect(mapping.request == .upnpSearch)
    }

    @Test func urlsAndAnswersAsGatewaysWriteThem() throws {
        let base = Self.location
        #expect(UPnPURL(Array("ctl/IPConn".utf8)[...], under: base)?.path == Array("/ctl/IPConn".utf8), "relative, no slash")
        #expect(UPnPURL(Array("http://203.0.113.5/".utf8)[...])?.endpoint == Endpoint(Self.gateway, 80))
        #expect(UPnPURL(Array("http://example.net:80/".utf8)[...]) == nil, "a name, not an address")
        #expect(UPnPURL(Array("http://203.0.113.5:0/".utf8)[...]) == nil)
        // URLBase names where relative URLs are.
        let withBase = Array("<root><URLBase>http://203.0.113.5:5000</URLBase><service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/upnp/control/WANPPPConn1</controlURL></service></root>".utf8)
        #expect(UPnP.services(in: withBase, from: base).first?.control.endpoint == Endpoint(Self.gateway, 5000))
        // A chunked answer, a prefixed element.
        let chunked = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n<m:NewExternalIP\r\n12;x=y\r\nAddress>198.51.100\r\n3\r\n.6<\r\n0\r\n\r\n".utf8)
        let answer = PortMappingAnswer(decoding: chunked, for: .upnpExternalAddress(Self.service))
        #expect(answer == .upnpExternalAddress(IPv4Address(198, 51, 100, 6)))
        let huge = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding:chunked\r\n\r\n7fffffffffffffff\r\nx\r\n0\r\n\r\n".utf8)
        #expect(UPnP.response(huge)?.body == [], "a chunk longer than the answer ends the body")
        #expect(UPnP.element("b", in: Array("<a></b><b>x</b>".utf8)[...]).map { Array($0) } == Array("x".utf8), "a closing tag is not the element")
        #expect(PortMappingAnswer(decoding: Self.http(Self.soap("<NewExternalIPAddress>0.0.0.0</NewExternalIPAddress>")), for: .upnpExternalAddress(Self.service)) == nil)
        // Spaces around values, a header in another case, a scheme in capitals.
        #expect(UPnP.location(Array("HTTP/1.1 200 OK\r\nlocation:\tHTTP://203.0.113.5:1780/desc.xml \r\n\r\n".utf8))
                == UPnPURL(endpoint: Endpoint(Self.gateway, 1780), path: Array("/desc.xml".utf8)))
        let pretty = Array("<service>\n  <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\n  <controlURL>\n    /ctl/IPConn\n  </controlURL>\n</service>".utf8)
        #expect(UPnP.services(in: pretty, from: base).first?.control.path == Array("/ctl/IPConn".utf8))
        let spaced = PortMappingAnswer(decoding: Self.http(Self.soap("<NewExternalIPAddress> 198.51.100.6 </NewExternalIPAddress>")), for: .upnpExternalAddress(Self.service))
        #expect(spaced == .upnpExternalAddress(IPv4Address(198, 51, 100, 6)))
        // AddPortMapping succeeded only when the answer says so.
        let map = PortMappingRequest.upnpMap(Self.service, externalPort: 51820, client: Self.gateway, internalPort: 51820, lifetime: 7200)
        #expect(PortMappingAnswer(decoding: Self.http(""), for: map) == nil, "a 200 with nothing in it is not a mapping")
        #expect(PortMappingAnswer(decoding: Self.added, for: map) == .upnpDone)
    }

    /// Nothing from the LAN names another host, or writes into a request: a control URL elsewhere
    /// than on the gateway, one that would break the request line, a service type that would
    /// break the header are not taken.
    @Test func aDescriptionCannotSendRequestsElsewhereOrBreakThem() throws {
        func services(_ service: String) -> [UPnPService] {
            UPnP.services(in: Array("<service>\(service)</service>".utf8), from: Self.location)
        }
        let type = "<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>"
        #expect(services(type + "<controlURL>/ctl\r\nX-Injected: 1\r\n\r\nGET /x</controlURL>").isEmpty)
        #expect(services("<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1\"#x</serviceType><controlURL>/c</controlURL>").isEmpty)
        #expect(services("<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1x</serviceType><controlURL>/c</controlURL>").isEmpty)
        let elsewhere = services(type + "<controlURL>http://198.51.100.9:8080/ctl</controlURL>")
        #expect(elsewhere.count == 1, "parsed, and then refused by the machine")
        var mapping = Self.machine([.upnp, .pcp])
        _ = mapping.start(now: 0)
        _ = mapping.received(Self.ssdpAnswer(), now: 0)
        let next = mapping.answered(Self.http("<root><service>\(type)<controlURL>http://198.51.100.9:8080/ctl</controlURL></service></root>"), now: 1)
        #expect(next.send?.transport == .datagram(port: 5351), "a control URL on another host: PCP next")
    }

    /// A datagram while an HTTP request is in flight — a second SSDP answer, a late PCP one — is
    /// not that request's answer; only its connection's end is.
    @Test func aStrayDatagramDoesNotEndAnHTTPRequest() throws {
        var mapping = Self.machine([.upnp, .pcp])
        _ = mapping.start(now: 0)
        _ = mapping.received(Self.ssdpAnswer(), now: 0)
        #expect(mapping.received(Self.ssdpAnswer(), now: 1) == PortMapping.Output())
        #expect(mapping.request == .upnpDescribe(Self.location))
        #expect(mapping.answered(Self.externalAddress, now: 1).send?.transport == .datagram(port: 5351), "not a description: given up")
        var idle = Self.machine([.upnp])
        #expect(idle.answered(Self.added, now: 0) == PortMapping.Output(), "an answer nobody asked for")
    }

    /// The services are tried in the order listed while their external address cannot be read (a
    /// WAN connection that is down).
    @Test func aServiceWithoutAnAddressGivesWayToTheNext() throws {
        let two = """
            <root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ip</controlURL></service>\
            <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ppp</controlURL></service></root>
            """
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        _ = mapping.received(Self.ssdpAnswer(), now: 0)
        guard case .upnpExternalAddress(let first)? = mapping.answered(Self.http(two), now: 0).send else { Issue.record("no request"); return }
        #expect(first.control.path == Array("/ip".utf8))
        let second = mapping.answered(Self.fault(501), now: 1).send
        guard case .upnpExternalAddress(let ppp)? = second else { Issue.record("\(String(describing: second))"); return }
        #expect(ppp.control.path == Array("/ppp".utf8) && ppp.type.elementsEqual("urn:schemas-upnp-org:service:WANPPPConnection:1".utf8))
    }

    /// A renewal that fails forgets the services, not the mapping to delete at exit (a permanent one
    /// would stay on the router for good).
    @Test func aMappingIsGivenBackAfterAFailedRenewal() throws {
        var mapping = Self.machine()
        _ = mapping.start(now: 0)
        _ = mapping.received(Self.ssdpAnswer(), now: 0)
        _ = mapping.answered(Self.http(Self.description), now: 0)
        _ = mapping.answered(Self.externalAddress, now: 0)
        _ = mapping.answered(Self.fault(725), now: 0)
        _ = mapping.answered(Self.added, now: 0)
        _ = mapping.timer(now: try #require(mapping.deadline))
        _ = mapping.failed(now: 3_600_000_000_001)
        #expect(mapping.mapped != nil && mapping.request == nil, "kept until it expires")
        #expect(mapping.stop() == [.upnpUnmap(Self.service, externalPort: 51820)])
    }
}
