import Net

/// When to retransmit a request and when to give up (RFC 8489 §6.2.1): the first retransmission
/// after `initialRTO`, each wait doubling up to `maxRTO`, `attempts` sends in all (Rc), then a
/// last wait of `finalWait` (Rm × RTO in the RFC). The RFC's defaults (500 ms, Rc 7, Rm 16: 39.5 s)
/// suit a call set-up; LANrage's are tuned for detection on a LAN-party timescale: 100 ms doubling,
/// capped at 400 ms, 7 sends, 400 ms last wait — a silent server is declared dead after 2.3 s.
public struct RetransmissionPolicy: Equatable, Sendable {
    public var initialRTO: Duration
    public var maxRTO: Duration
    public var attempts: Int
    public var finalWait: Duration

    public init(
        initialRTO: Duration = .milliseconds(100), maxRTO: Duration = .milliseconds(400), attempts: Int = 7,
        finalWait: Duration = .milliseconds(400)
    ) {
        self.initialRTO = initialRTO
        self.maxRTO = max(maxRTO, initialRTO)
        self.attempts = max(1, attempts)
        self.finalWait = finalWait
    }

    /// The RFC 8489 defaults, for interoperability tests against slow servers.
    public static let rfc8489 = RetransmissionPolicy(
        initialRTO: .milliseconds(500), maxRTO: .seconds(3600), attempts: 7, finalWait: .seconds(8)
    )

    /// How long to wait after send number `attempt` (1-based) before retransmitting or giving up.
    public func wait(afterAttempt attempt: Int) -> Duration {
        if attempt >= attempts { return finalWait }
        var rto = initialRTO
        for _ in 1..<max(1, attempt) {
            rto = rto * 2
            if rto >= maxRTO { return maxRTO }
        }
        return min(rto, maxRTO)
    }

    /// From the first send to giving up.
    public var totalTime: Duration {
        (1...attempts).reduce(Duration.zero) { $0 + wait(afterAttempt: $1) }
    }
}

/// One client transaction: a request, its retransmissions and its deadline. A value; the owner
/// arms a timer for `wait` after each send and calls `timerFired` when it goes off.
public struct ClientTransaction: Sendable {
    public let id: TransactionID
    public let destination: Endpoint
    public let request: [UInt8]
    public let policy: RetransmissionPolicy
    public private(set) var attemptsSent = 0
    public private(set) var firstSentAt: Duration = .zero
    public private(set) var lastSentAt: Duration = .zero

    public init(request: Message, to destination: Endpoint, policy: RetransmissionPolicy) {
        id = request.transactionID
        self.destination = destination
        self.request = request.encoded(fingerprint: true)
        self.policy = policy
    }

    /// Records one (re)transmission at `now`; returns how long to wait for an answer.
    public mutating func sent(at now: Duration) -> Duration {
        if attemptsSent == 0 { firstSentAt = now }
        attemptsSent += 1
        lastSentAt = now
        return policy.wait(afterAttempt: attemptsSent)
    }

    /// Whether the wait after the last send has run out for good (no attempts left).
    public var isExhausted: Bool { attemptsSent >= policy.attempts }

    /// Round-trip time of an answer arriving at `now`, measured from the latest transmission.
    public func roundTrip(at now: Duration) -> Duration { now - lastSentAt }

    /// Whether `message` answers this transaction (same id, a response to the same method).
    public func isAnswered(by message: Message) -> Bool {
        message.transactionID == id && message.type.method == MessageType.bindingMethod
            && (message.type.messageClass == .successResponse || message.type.messageClass == .errorResponse)
    }
}
