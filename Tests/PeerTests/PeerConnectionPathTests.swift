import Net
import Peer
import Testing

/// How the connection points WireGuard, takes its turn and reads it: the WireGuard changes it
/// decides, in order, in wall milliseconds given by the test.
@Suite struct PeerConnectionPathTests {
    let direct = Endpoint("198.51.100.7:41641")!
    let relay = Endpoint("203.0.113.9:40001")!

    func reading(_ endpoint: Endpoint?, handshake: Int64? = nil, received: UInt64 = 0) -> WireGuardReading {
        WireGuardReading(endpoint: endpoint, lastHandshake: handshake, received: received)
    }

    /// Facts at wall time `wall` (monotonic time is wall time less a day, in nanoseconds).
    func facts(_ state: PeerState, path: PeerContext.Path = .none, wall: Int64, second: Int64 = 0, smaller: Bool = true,
               forwarded: Bool = false) -> PeerConnection.ReadFacts {
        PeerConnection.ReadFacts(state: state, path: path, wall: wall, now: (wall - 86_400_000) * 1_000_000, secondInState: second,
                                 localKeyIsSmaller: smaller, timings: PeerTimings(), forwarded: forwarded)
    }

    func isRelay(_ endpoint: Endpoint) -> Bool { endpoint.address == relay.address }

    @Test func aFreshPeerIsAddedAfreshByTheSmallerKeyAndHeldBackByTheLarger() {
        var smaller = PeerConnection()
        #expect(smaller.point(at: direct, before: reading(nil), wall: 1_000, localKeyIsSmaller: true) == [.remove, .point(direct)])
        #expect(smaller.path?.deferred == false)
        var larger = PeerConnection()
        #expect(larger.point(at: direct, before: reading(nil), wall: 1_000, localKeyIsSmaller: false) == [])
        #expect(larger.path?.deferred == true && larger.path?.endpoint == direct)
        var used = PeerConnection()
        #expect(used.point(at: direct, before: reading(relay, handshake: 900, received: 64), wall: 1_000, localKeyIsSmaller: false)
                == [.point(direct)], "a peer with a session is only pointed elsewhere")
        #expect(used.path?.receivedAtSet == 64)
    }

    @Test func theLargerKeyTakesItsTurnAfterTheLag() {
        #expect(PeerConnection.keepaliveTurn(localKeyIsSmaller: true) == nil)
        #expect(PeerConnection.keepaliveTurn(localKeyIsSmaller: false) == PeerConnection.keepaliveLag)
        var held = PeerConnection()
        _ = held.point(at: direct, before: reading(nil), wall: 1_000, localKeyIsSmaller: false)
        var answered = held
        #expect(answered.takeTurn(reading(direct, handshake: 1_100, received: 92)) == [.kick],
                "the peer's initiation was answered: WireGuard has the endpoint from it")
        #expect(answered.path?.deferred == false)
        var roamedElsewhere = held
        #expect(roamedElsewhere.takeTurn(reading(relay, handshake: 1_100, received: 92)) == [.setEndpoint(direct), .kick])
        #expect(held.takeTurn(reading(nil)) == [.remove, .point(direct), .kick], "no handshake: added afresh, it initiates at once")
        var none = PeerConnection()
        #expect(none.takeTurn(nil) == [.kick])
    }

    /// Relayed, WireGuard left the relay it was pointed at for a direct endpoint of the peer's (the
    /// peer's pin found the path this side's attempt missed): the read reports it, once, for Direct.
    /// An endpoint WireGuard still has from before the relay was pointed at (the path just lost) is
    /// not one it found.
    @Test func aDirectEndpointWireGuardMovesToWhileRelayedIsFound() {
        var relaying = PeerConnection()
        let lost = relaying.read(reading(direct, handshake: 500, received: 100), facts(.relaying, wall: 1_000), isRelay: isRelay)
        #expect(lost.found == nil, "no relay pointed at yet: the old direct endpoint is not found")
        _ = relaying.point(at: relay, before: reading(direct, handshake: 500, received: 100), wall: 1_000, localKeyIsSmaller: true)
        #expect(relaying.read(reading(relay, handshake: 1_100, received: 200), facts(.relaying, wall: 1_200), isRelay: isRelay).found == nil)
        let moved = relaying.read(reading(direct, handshake: 1_100, received: 300), facts(.relaying, wall: 1_400), isRelay: isRelay)
        #expect(moved.found == direct)
        var kept = relaying
        #expect(kept.read(reading(direct, handshake: 1_100, received: 400), facts(.keepalive, path: .relayed, wall: 1_600),
                          isRelay: isRelay).found == direct, "in Keepalive on the relay too")
        #expect(relaying.read(reading(direct, handshake: 1_100, received: 300), facts(.keepalive, path: .direct, wall: 1_400),
                              isRelay: isRelay).found == nil, "on the direct path it is no news")
        #expect(relaying.takeFound() == direct)
        #expect(relaying.takeFound() == nil, "taken once")
    }

    /// A packet that crossed the relay before the switch took WireGuard back there: the direct
    /// endpoint is set again, and only what comes after counts.
    @Test func aLateRelayPacketIsUndoneOnTheDirectPath() {
        var connection = PeerConnection()
        _ = connection.point(at: direct, before: reading(relay, handshake: 500, received: 100), wall: 1_000, localKeyIsSmaller: true)
        let read = connection.read(reading(relay, handshake: 500, received: 180), facts(.direct, wall: 1_400, second: 0), isRelay: isRelay)
        #expect(read.steps == [.setEndpoint(direct)])
        #expect(!read.confirmed)
        #expect(connection.path?.setAt == 1_400 && connection.path?.receivedAtSet == 180)
        let moved = Endpoint("198.51.100.7:41999")!
        var working = connection
        #expect(working.read(reading(moved, handshake: 2_000, received: 300), facts(.keepalive, path: .direct, wall: 2_100), isRelay: isRelay).steps == [])
        #expect(working.path?.endpoint == moved, "a working path follows the peer's NAT rebinding")
        var forwarded = connection
        #expect(forwarded.read(reading(relay, handshake: 500, received: 180), facts(.direct, wall: 1_400, forwarded: true), isRelay: isRelay).steps == [],
                "a fan port's forwarder is not the agent's endpoint to keep")
    }

    @Test func directWithoutConfirmationAsksForAHandshakeAtItsSeconds() {
        var connection = PeerConnection()
        _ = connection.point(at: direct, before: reading(relay, handshake: 500, received: 100), wall: 1_000, localKeyIsSmaller: true)
        let quiet = reading(direct, handshake: 500, received: 100)
        #expect(connection.read(quiet, facts(.direct, wall: 2_000, second: 1), isRelay: isRelay).steps == [])
        let asked = connection.read(quiet, facts(.direct, wall: 3_000, second: 2), isRelay: isRelay)
        #expect(asked.steps == [.remove, .point(direct), .kick])
        #expect(connection.path?.receivedAtSet == 0, "a new WireGuard peer counts from 0")
        #expect(connection.read(quiet, facts(.direct, wall: 3_000, second: 2, smaller: false), isRelay: isRelay).steps == [],
                "the larger key asks at 4 and 8")
        let confirmed = connection.read(reading(direct, handshake: 3_100, received: 92), facts(.direct, wall: 3_200, second: 2), isRelay: isRelay)
        #expect(confirmed.confirmed && confirmed.steps == [] && confirmed.handshakeAge == .zero)
        let missing = connection.read(nil, facts(.relaying, wall: 3_200, second: 2), isRelay: isRelay)
        #expect(missing.steps == [] && !missing.confirmed && missing.handshakeAge == nil)
    }

    /// With no traffic, persistent keepalives may go one way only, and the side that sends them
    /// hears nothing: a keepalive interval of silence is probed, and the path counts as silent only
    /// after the silence limit with the first probe unanswered for `probeAnswer`.
    @Test func silenceIsProbedBeforeItCounts() {
        var connection = PeerConnection()
        _ = connection.point(at: direct, before: reading(relay, handshake: 500, received: 100), wall: 1_000, localKeyIsSmaller: true)
        let base: Int64 = 100_000
        func read(at seconds: Int64, received: UInt64) -> PeerConnection.Reading {
            connection.read(reading(direct, handshake: 60_000, received: received), facts(.keepalive, path: .direct, wall: base + seconds * 1000),
                            isRelay: isRelay)
        }
        #expect(read(at: 0, received: 400).steps == [])
        #expect(read(at: 20, received: 400).steps == [], "less than a keepalive interval")
        let first = read(at: 30, received: 400)
        #expect(first.steps == [.probe] && first.silence == .seconds(30) && !first.lost)
        #expect(read(at: 40, received: 400).steps == [.probe], "probed again while silent")
        #expect(!read(at: 41, received: 400).lost, "the first probe has had only 11 s")
        let answered = read(at: 45, received: 432)
        #expect(answered.steps == [] && answered.silence == .zero && !answered.lost)
        #expect(read(at: 75, received: 432).steps == [.probe])
        #expect(!read(at: 119, received: 432).lost, "74 s of silence is within the limit")
        let silent = read(at: 120, received: 432)
        #expect(silent.lost && silent.silence == .seconds(75))
        // A handshake nearly stale is probed; an old one counts once the probe went unanswered, and
        // data received does not answer it (only a new handshake does).
        var aging = PeerConnection()
        func age(_ seconds: Int64, received: UInt64) -> PeerConnection.Reading {
            aging.read(reading(direct, handshake: base, received: received), facts(.keepalive, path: .direct, wall: base + seconds * 1000),
                       isRelay: isRelay)
        }
        #expect(age(142, received: 1).steps == [])
        #expect(age(172, received: 2).steps == [.probe], "30 s from the stale limit")
        let pending = age(212, received: 3)
        #expect(pending.steps == [.probe] && !pending.lost, "older than the stale limit, but WireGuard's retries past it have had only 32 s")
        let old = age(214, received: 4)
        #expect(old.lost && old.silence == .zero, "data, but no new handshake 42 s after the first probe: the session is gone")
        // Keepalive entered on the peer's initiation, answered, before any handshake completed: no
        // handshake is probed like an old one, and lost only when the probes go unanswered as long.
        var responder = PeerConnection()
        func unfinished(_ seconds: Int64, received: UInt64) -> PeerConnection.Reading {
            responder.read(reading(relay, handshake: nil, received: received), facts(.keepalive, path: .relayed, wall: base + seconds * 1000),
                          isRelay: isRelay)
        }
        let opening = unfinished(0, received: 148)
        #expect(opening.steps == [.probe] && !opening.lost)
        #expect(!unfinished(41, received: 148).lost)
        #expect(unfinished(42, received: 148).lost, "no handshake 42 s after the first probe")
        // With a path and no handshake yet, the smaller key adds the peer afresh to initiate out of
        // step (initiations may be crossing); the larger key probes.
        var smaller = PeerConnection(), larger = PeerConnection()
        _ = smaller.point(at: relay, before: reading(relay, handshake: nil, received: 148), wall: base, localKeyIsSmaller: true)
        _ = larger.point(at: relay, before: reading(relay, handshake: nil, received: 148), wall: base, localKeyIsSmaller: false)
        let crossed = reading(relay, handshake: nil, received: 148)
        #expect(smaller.read(crossed, facts(.keepalive, path: .relayed, wall: base + 10_000), isRelay: isRelay).steps
                == [.remove, .point(relay), .kick])
        #expect(larger.read(crossed, facts(.keepalive, path: .relayed, wall: base + 10_000, smaller: false), isRelay: isRelay).steps
                == [.probe])
        // The WireGuard peer gone from the device (removed behind the agent's back): lost once the
        // window of a probe has passed, and the connection punches and points WireGuard again.
        var vanished = PeerConnection()
        _ = vanished.read(reading(direct, handshake: base, received: 9), facts(.keepalive, path: .direct, wall: base), isRelay: isRelay)
        #expect(vanished.read(nil, facts(.keepalive, path: .direct, wall: base + 10_000), isRelay: isRelay).steps == [])
        #expect(!vanished.read(nil, facts(.keepalive, path: .direct, wall: base + 51_000), isRelay: isRelay).lost)
        #expect(vanished.read(nil, facts(.keepalive, path: .direct, wall: base + 52_000), isRelay: isRelay).lost)
        var relaying = PeerConnection()
        #expect(relaying.read(reading(relay, handshake: 500, received: 100), facts(.relaying, wall: base), isRelay: isRelay).steps == [])
        #expect(relaying.read(reading(relay, handshake: 500, received: 100), facts(.relaying, wall: base + 90_000), isRelay: isRelay).steps == [],
                "only a working tunnel is probed")
    }
}
