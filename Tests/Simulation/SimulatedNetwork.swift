import EventLoop
import Net
import STUN
import Time

/// An IPv4 network in one process and in virtual time: hosts on LAN segments behind NAT routers
/// (nested for carrier-grade NAT), servers on the Internet, datagrams crossing the Internet under
/// `conditions`. Components run on it unchanged: they get ``SimulatedSocket``s (a `PortSocket`),
/// the network's `clock`, and register their timers (`TimerSource`) with ``add(_:)``. ``run(until:)``
/// delivers datagrams and fires timers in time order; ties go in the order they were scheduled.
/// Everything left to chance is drawn from one seeded generator, so a seed replays a run exactly.
public final class SimulatedNetwork {
    public let clock = VirtualClock()
    public var random: SimulationRandom
    public var conditions: LinkConditions
    /// One line per event worth reading when a run fails: datagrams dropped, faults, what the
    /// scenario records. Bounded (`traceLimit`): the oldest lines go first.
    public private(set) var trace: [String] = []
    public let traceLimit: Int

    /// Whether every datagram lost, filtered or dropped gets a line too (a replayed seed's trace,
    /// then kept whole up to two million lines).
    public let verbose: Bool
    /// Events handled (datagrams, calls and timer rounds), and whether a run went past `eventLimit`:
    /// something that schedules itself without end (at one instant, or faster than time goes).
    public private(set) var events = 0
    public private(set) var runaway = false
    public var eventLimit = 5_000_000

    /// Datagrams delivered, dropped by loss, dropped by a filter or for want of a route.
    public private(set) var delivered = 0, lost = 0, filtered = 0, unroutable = 0

    public private(set) var routers: [SimulatedRouter] = []
    private var hosts: [SimulatedHost] = []
    /// Segment → address → host on it; segment → address → router whose WAN side is on it.
    private var hostsOn: [Int: [IPv4Address: SimulatedHost]] = [:]
    private var routersOn: [Int: [IPv4Address: SimulatedRouter]] = [:]
    /// Segment → the router it is the LAN of.
    private var routerOf: [Int: SimulatedRouter] = [:]
    private var segments = 1
    private var timerSources: [any TimerSource] = []

    private enum Work {
        case datagram(PortDatagram, segment: Int)
        case call(() -> Void)
    }
    private var queue = EventQueue<Work>()

    /// The Internet is segment 0.
    public static let internet = 0

    public init(seed: UInt64, conditions: LinkConditions = .clean, verbose: Bool = false) {
        random = SimulationRandom(seed: seed)
        self.conditions = conditions
        self.verbose = verbose
        traceLimit = verbose ? 2_000_000 : 4096
    }

    // MARK: Building

    /// A host at `address` on `segment` (the Internet unless given).
    public func addHost(_ name: String, address: IPv4Address, on segment: Int = SimulatedNetwork.internet) -> SimulatedHost {
        let host = SimulatedHost(name: name, address: address, segment: segment, network: self)
        hosts.append(host)
        hostsOn[segment, default: [:]][address] = host
        return host
    }

    /// A NAT router with public address `wan` on `segment`; its LAN is a new segment.
    public func addRouter(_ name: String, behaviour: NATType, wan: IPv4Address, on segment: Int = SimulatedNetwork.internet) -> SimulatedRouter {
        let router = SimulatedRouter(name: name, behaviour: behaviour, wan: wan, outside: segment, inside: segments)
        segments += 1
        routers.append(router)
        routersOn[segment, default: [:]][wan] = router
        routerOf[router.inside] = router
        return router
    }

    /// `router` gets `address` as its public address (a new lease): the old one reaches nothing
    /// more, and its mappings are gone, as masquerading drops its connections with the address.
    public func renumber(_ router: SimulatedRouter, to address: IPv4Address) {
        routersOn[router.outside]?[router.wan] = nil
        routersOn[router.outside, default: [:]][address] = router
        router.wan = address
        router.flush()
    }

    /// A component's timers, fired as virtual time reaches them.
    public func add(_ source: any TimerSource) {
        timerSources.append(source)
    }

    /// Runs `body` after `delay`.
    public func after(_ delay: Duration, _ body: @escaping () -> Void) {
        schedule(at: clock.now + delay.nanoseconds, .call(body))
    }

    /// Adds a line to the trace, stamped with the virtual time.
    public func note(_ line: @autoclosure () -> String) {
        if trace.count >= traceLimit { trace.removeFirst(traceLimit / 4) }
        let ms = clock.now / 1_000_000
        trace.append("\(ms / 1000).\(String(ms % 1000).leftPadded(3)) \(line())")
    }

    // MARK: Running

    /// Delivers datagrams and fires timers in time order until `deadline`, or until `done` holds
    /// after an event. Returns whether `done` held.
    @discardableResult
    public func run(until deadline: Nanoseconds, done: () -> Bool = { false }) -> Bool {
        while true {
            if done() { return true }
            events += 1
            if events > eventLimit {
                if !runaway { note("runaway: more than \(eventLimit) events; the run stops here") }
                runaway = true
                clock.now = max(clock.now, deadline)
                return done()
            }
            var next = queue.nextTime
            for source in timerSources {
                if let due = source.nextDeadline, next.map({ due < $0 }) ?? true { next = due }
            }
            guard let next, next <= deadline else {
                clock.now = max(clock.now, deadline)
                return done()
            }
            clock.now = max(clock.now, next)
            if let time = queue.nextTime, time <= clock.now {
                switch queue.pop() {
                case .datagram(let datagram, let segment): route(datagram, on: segment)
                case .call(let body): body()
                }
            } else {
                for source in timerSources where (source.nextDeadline ?? .max) <= clock.now { source.fireDueTimers() }
            }
        }
    }

    // MARK: Datagrams

    /// Sends from a host's socket: through the NATs in front of it now, across the Internet (or
    /// the LAN) with the delay, loss and duplication of `conditions`.
    func send(_ payload: [UInt8], from source: Endpoint, to destination: Endpoint, segment: Int) {
        forward(PortDatagram(payload: payload, source: source, destination: destination), on: segment, hops: 0)
    }

    /// Moves a datagram up through the routers until it is on the segment of its destination,
    /// then schedules its arrival there.
    private func forward(_ datagram: PortDatagram, on segment: Int, hops: Int) {
        guard hops < 8, case .v4(let address) = datagram.destination.address else { return drop(datagram, "unroutable") }
        if hostsOn[segment]?[address] != nil || routersOn[segment]?[address] != nil {
            return arrive(datagram, on: segment)
        }
        guard let router = routerOf[segment] else { return drop(datagram, "unroutable") }
        guard let source = router.outbound(from: datagram.source, to: datagram.destination, now: clock.now, random: &random) else {
            return drop(datagram, "\(router.name): mapping table full")
        }
        var translated = datagram
        translated.source = source
        if address == router.wan {
            // To the router's own public address from inside: back in only with hairpin NAT.
            guard router.hairpin else { return drop(datagram, "\(router.name): no hairpin") }
            guard let inside = router.hairpinned(to: datagram.destination, now: clock.now) else {
                return drop(datagram, "\(router.name): hairpin to no mapping")
            }
            translated.destination = inside
            return schedule(at: clock.now + conditions.lanDelay, .datagram(translated, segment: router.inside))
        }
        forward(translated, on: router.outside, hops: hops + 1)
    }

    /// Schedules the datagram's arrival on `segment`: after the LAN delay inside a site, after the
    /// Internet's delay, jitter, loss and duplication on it.
    private func arrive(_ datagram: PortDatagram, on segment: Int) {
        guard segment == Self.internet else { return schedule(at: clock.now + conditions.lanDelay, .datagram(datagram, segment: segment)) }
        if random.happens(conditions.loss) {
            lost += 1
            guard verbose else { return }
            return note("lost \(datagram.source) → \(datagram.destination) (\(datagram.payload.count) B)")
        }
        let copies = random.happens(conditions.duplication) ? 2 : 1
        for _ in 0..<copies {
            let delay = conditions.delay + (conditions.jitter > 0 ? random.nanoseconds(in: 0...conditions.jitter) : 0)
            schedule(at: clock.now + delay, .datagram(datagram, segment: segment))
        }
    }

    /// A datagram arrived on `segment`: to a host there, or in through a router's WAN side and on
    /// down to the LAN behind it.
    private func route(_ datagram: PortDatagram, on segment: Int) {
        guard case .v4(let address) = datagram.destination.address else { return drop(datagram, "unroutable") }
        if let host = hostsOn[segment]?[address] {
            delivered += 1
            return host.receive(datagram)
        }
        if let router = routersOn[segment]?[address] {
            guard let inside = router.inbound(from: datagram.source, to: datagram.destination, now: clock.now) else {
                filtered += 1
                guard verbose else { return }
                return note("\(router.name) filtered \(datagram.source) → \(datagram.destination)")
            }
            var translated = datagram
            translated.destination = inside
            // Hairpinned datagrams keep the public source; the router's LAN is one hop on.
            return route(translated, on: router.inside)
        }
        drop(datagram, "unroutable")
    }

    private func drop(_ datagram: PortDatagram, _ reason: String) {
        unroutable += 1
        guard verbose else { return }
        note("dropped \(datagram.source) → \(datagram.destination): \(reason)")
    }

    private func schedule(at time: Nanoseconds, _ what: Work) {
        queue.push(what, at: time)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
