import Time
import StateChart

/// The peer connection chart: Discovering → Detecting → Punching → Direct | Relaying → Keepalive,
/// with every failure and recovery edge. Read it top to bottom like the picture in
/// `StateCharts/peer.svg` (generated from this table by `lanrage chart peer`).
public enum PeerChart: ChartSpec {
    public typealias State = PeerState
    public typealias Event = PeerEvent
    public typealias Action = PeerAction
    public typealias Context = PeerContext

    // Guards, named as the picture shows them.
    static let directPossible = Guard<PeerContext>("direct possible") { $0.directPossible != false }
    static let burstsLeft = Guard<PeerContext>("bursts left") { $0.punchBursts < $0.timings.punchAttempts }
    static let relayed = Guard<PeerContext>("relayed") { $0.path == .relayed }
    static let relayAlive = Guard<PeerContext>("relay alive") { $0.path == .relayed && !$0.handshakeStale }
    static let confirmed = Guard<PeerContext>("confirmed") { $0.pathConfirmed }
    static let stale = Guard<PeerContext>("stale") { $0.handshakeStale }
    static let windowOver = Guard<PeerContext>("window over") { $0.windowOver }

    /// The chart with the given timings.
    public static func chart(_ timings: PeerTimings = PeerTimings()) -> Chart<PeerChart> {
        let upgradeBackoff = Delay<PeerContext>.computed(
            "\(Delay<PeerContext>.format(timings.upgradeBase))·2ⁿ ≤ \(Delay<PeerContext>.format(timings.upgradeMax))"
        ) { $0.timings.upgradeDelay(attempt: $0.upgradeFailures) }

        var rows: [Row<PeerChart>] = [
            Row(.discovering, on: .candidatesKnown, to: .detecting),
            Row(.discovering, on: .discoveryRetry, to: .discovering),

            // Open or full cone on both sides punch too, at once (no instant to agree on): a claimed
            // endpoint is used only after it answered.
            Row(.detecting, on: .natKnown, when: directPossible, to: .punching),
            Row(.detecting, on: .natKnown, when: !directPossible, to: .relaying),
            Row(.detecting, on: .detectionTimeout, to: .punching),
            // The early relay: traffic flows through it while the direct path is sought.
            Row(.detecting, on: .relayReady, stay: [.setRelayEndpoint, .enableKeepalive]),
            Row(.detecting, on: .relayFailed, stay: []),

            Row(.punching, on: .punchTick, stay: [.sendPunch]),
            Row(.punching, on: .punchAcked, to: .direct),
            Row(.punching, on: .punchTimeout, when: burstsLeft, to: .punching),
            // Back on the relay after a failed upgrade, WireGuard is read at once: the peer's pin may have
            // found the direct path this side's attempt missed, and WireGuard went there.
            Row(.punching, on: .punchTimeout, when: relayAlive, to: .keepalive, do: [.endPunch, .readHandshake],
                update: { $0.upgradeFailures += 1 }),
            Row(.punching, on: .punchTimeout, to: .relaying, do: [.endPunch]),
            Row(.punching, on: .relayReady, stay: [.setRelayEndpoint, .enableKeepalive]),
            Row(.punching, on: .relayFailed, stay: []),

            Row(.direct, on: .livenessTick, stay: [.readHandshake]),
            Row(.direct, on: .wireGuardRead, when: confirmed, to: .keepalive, do: [.releaseRelay],
                update: { $0.path = .direct; $0.upgradeFailures = 0 }),
            // The window's end reads WireGuard once more: a path confirmed in its last second counts.
            Row(.direct, on: .confirmTimeout, stay: [.readHandshake], update: { $0.windowOver = true }),
            Row(.direct, on: .wireGuardRead, when: windowOver, to: .relaying),

            // The last attempt's ACK came after its timeout (the peer joined late): the direct path is open.
            Row(.relaying, on: .punchAcked, to: .direct),
            Row(.relaying, on: .relayReady, stay: [.setRelayEndpoint, .enableKeepalive]),
            // No relay granted: wait for the relay timeout before asking again (a party over its relay
            // quota must not turn into a request storm).
            Row(.relaying, on: .relayFailed, stay: []),
            Row(.relaying, on: .livenessTick, stay: [.readHandshake]),
            Row(.relaying, on: .wireGuardRead, when: confirmed, to: .keepalive, update: { $0.path = .relayed }),
            // Nothing confirmed in time (no relay granted, or none answering): try the direct path again;
            // a failed punch comes back here for a new allocation.
            Row(.relaying, on: .relayTimeout, stay: [.readHandshake], update: { $0.windowOver = true }),
            Row(.relaying, on: .wireGuardRead, when: windowOver, to: .punching),

            Row(.keepalive, on: .livenessTick, stay: [.readHandshake]),
            Row(.keepalive, on: .wireGuardRead, when: stale, to: .punching, do: [.rediscoverNAT]),
            Row(.keepalive, on: .endpointChanged, to: .punching, do: [.rediscoverNAT]),
            Row(.keepalive, on: .upgradeDue, when: relayed, to: .punching, do: [.rediscoverNAT]),
            // Relayed after this side's attempt ended, the peer's PUNCHes (its upgrade, or its late
            // answer) pinned the direct path: take it now, not at the next upgrade.
            Row(.keepalive, on: .punchAcked, when: relayed, to: .direct),
            // Relayed, the pair's allocation moved (the peer asked anew after a relay restart): take it over.
            Row(.keepalive, on: .relayReady, when: relayed, to: .relaying),
            Row(.keepalive, on: .upgradeDue, stay: []),
        ]
        for state in [PeerState.discovering, .detecting, .punching, .direct, .relaying, .keepalive] {
            rows.append(Row(state, on: .peerLeft, to: .closed))
        }

        let states: [StateInfo<PeerChart>] = [
            StateInfo(.discovering, entry: [.requestCandidates]),
            StateInfo(.detecting, entry: [.detectNAT, .allocateRelay]),
            StateInfo(.punching, entry: [.startPunch], onEntry: { $0.punchBursts += 1 }),
            // Entered from Punching, the attempt ends once the pinned endpoint (a fan port's too) is set.
            StateInfo(.direct, entry: [.setDirectEndpoint, .enableKeepalive, .endPunch], onEntry: { $0.pathConfirmed = false; $0.windowOver = false }),
            // Relaying ends a round of punch attempts: the next round (the relay timeout's) starts afresh,
            // with a new session both sides agree on through the control server.
            StateInfo(.relaying, entry: [.allocateRelay], onEntry: {
                $0.pathConfirmed = false; $0.path = .none; $0.punchBursts = 0; $0.windowOver = false
            }),
            StateInfo(.keepalive, onEntry: { $0.punchBursts = 0 }),
            StateInfo(.closed, entry: [.removePeer, .releaseRelay], final: true),
        ]

        var timeouts: [Timeout<PeerChart>] = [
            Timeout(.discovering, after: .fixed(timings.discoveryRetry), fire: .discoveryRetry),
            Timeout(.detecting, after: .fixed(timings.detection), fire: .detectionTimeout),
            Timeout(.punching, after: .fixed(timings.punchAttempt), fire: .punchTimeout),
            Timeout(.direct, every: .fixed(timings.confirmPoll), times: confirmPolls(timings.directConfirm, timings), fire: .livenessTick),
            Timeout(.direct, after: .fixed(timings.directConfirm), fire: .confirmTimeout),
            Timeout(.relaying, every: .fixed(timings.confirmPoll), times: confirmPolls(timings.relayConfirm, timings), fire: .livenessTick),
            Timeout(.relaying, after: .fixed(timings.relayConfirm), fire: .relayTimeout),
            Timeout(.keepalive, every: .fixed(timings.livenessPoll), fire: .livenessTick),
            Timeout(.keepalive, after: upgradeBackoff, fire: .upgradeDue),
        ]

        if timings.punchPackets > 1 {
            // The first packet goes on entry; the timer sends the rest of the burst.
            timeouts.insert(Timeout(.punching, every: .fixed(timings.punchInterval), times: timings.punchPackets - 1,
                                    fire: .punchTick), at: 2)
        }
        do throws(ChartValidationError) {
            return try Chart(name: "peer", initial: .discovering, states: states, rows: rows, timeouts: timeouts)
        } catch {
            preconditionFailure("the peer chart is checked by its tests: \(error)")
        }
    }

    /// Polls that fall strictly inside a confirmation window (at least one).
    private static func confirmPolls(_ window: Duration, _ timings: PeerTimings) -> Int {
        max(1, Int((window.nanoseconds - 1) / max(1, timings.confirmPoll.nanoseconds)))
    }
}
