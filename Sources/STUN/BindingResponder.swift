import Net

/// The server side of STUN binding, as a pure function of (datagram, who sent it, where it arrived).
/// With an alternate address it is an RFC 5780 server: it may hold up to four sockets — primary and
/// alternate IP, each with primary and alternate port — and answers CHANGE-REQUEST from the socket
/// asked for. It answers RFC 3489 (classic) clients too, in their own dialect (MAPPED-ADDRESS,
/// SOURCE-ADDRESS, CHANGED-ADDRESS), because Debian's `stun` client speaks only that.
public struct BindingResponder: Sendable {
    public let primary: Endpoint
    public let alternate: Endpoint?
    public var software: String

    public init(primary: Endpoint, alternate: Endpoint?, software: String = "lanrage") {
        self.primary = primary
        self.alternate = alternate
        self.software = software
    }

    /// The local endpoints to listen on: one without an alternate, four with one.
    public var listenEndpoints: [Endpoint] {
        guard let alternate else { return [primary] }
        return [primary, Endpoint(primary.address, alternate.port), Endpoint(alternate.address, primary.port), alternate]
    }

    public struct Reply: Sendable, Equatable {
        public var bytes: [UInt8]
        /// The local endpoint (one of `listenEndpoints`) to send from.
        public var from: Endpoint
        public var to: Endpoint
    }

    /// The answer to a datagram from `client` that arrived on `local`, or `nil` to stay silent
    /// (not STUN, not a binding request).
    public func respond(to datagram: [UInt8], from client: Endpoint, on local: Endpoint) -> Reply? {
        guard let request = try? Message(decoding: datagram, allowingClassic: true),
              request.type == .bindingRequest else { return nil }
        var response = Message(type: .bindingSuccess, transactionID: request.transactionID)
        response.classicCookie = request.classicCookie
        let classic = request.classicCookie != nil

        let unknown = request.unknownComprehensionRequired
        if !unknown.isEmpty {
            response.type = .bindingError
            response.attributes = [.errorCode(code: 420, reason: "Unknown Attribute"), .unknownAttributes(unknown),
                                   .software(software)]
            return Reply(bytes: response.encoded(fingerprint: !classic), from: local, to: client)
        }

        var source = local
        if let change = request.changeRequest, change.changeIP || change.changePort {
            guard let alternate else {
                // RFC 5780 §6.1: CHANGE-REQUEST without an alternate address is answered with 420.
                response.type = .bindingError
                response.attributes = [.errorCode(code: 420, reason: "Unknown Attribute"),
                                       .unknownAttributes([AttributeType.changeRequest]), .software(software)]
                return Reply(bytes: response.encoded(fingerprint: !classic), from: local, to: client)
            }
            if change.changeIP { source.address = local.address == primary.address ? alternate.address : primary.address }
            if change.changePort { source.port = local.port == primary.port ? alternate.port : primary.port }
        }
        // OTHER-ADDRESS: the address differing from the one the request came in on in both IP and port.
        let other = alternate.map { alternate in
            Endpoint(local.address == primary.address ? alternate.address : primary.address,
                     local.port == primary.port ? alternate.port : primary.port)
        }
        if classic {
            response.attributes = [.mappedAddress(client), .sourceAddress(source)]
            if let other { response.attributes.append(.changedAddress(other)) }
        } else {
            response.attributes = [.xorMappedAddress(client), .mappedAddress(client), .responseOrigin(source)]
            if let other { response.attributes.append(.otherAddress(other)) }
        }
        response.attributes.append(.software(software))
        return Reply(bytes: response.encoded(fingerprint: !classic), from: source, to: client)
    }
}
