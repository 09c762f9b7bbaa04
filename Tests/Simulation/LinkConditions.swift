/// What the Internet does to a datagram between two sites: one-way delay with jitter (jitter
/// reorders datagrams sent close together), loss and duplication. Each datagram crossing the
/// Internet draws its fate from the network's seeded generator; datagrams on one LAN arrive after
/// `lanDelay`, in order, and are never lost.
public struct LinkConditions: Sendable, Equatable, CustomStringConvertible {
    /// One-way delay across the Internet, in nanoseconds.
    public var delay: Int64
    /// Extra delay drawn uniformly from 0…jitter, in nanoseconds.
    public var jitter: Int64
    /// Chance that a datagram is lost.
    public var loss: Double
    /// Chance that a datagram arrives twice (the copy with a delay of its own).
    public var duplication: Double
    /// Delay on a LAN, in nanoseconds.
    public var lanDelay: Int64 = 200_000

    public init(delay: Int64 = 20_000_000, jitter: Int64 = 0, loss: Double = 0, duplication: Double = 0) {
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
        self.duplication = duplication
    }

    /// A clean network: 20 ms one way, nothing lost.
    public static let clean = LinkConditions()

    /// Conditions drawn from `random`: 2–80 ms one way, jitter up to 30 ms, up to 10 % loss and
    /// 3 % duplication (a third of the runs clean of loss).
    public static func drawn(using random: inout SimulationRandom) -> LinkConditions {
        let lossy = random.happens(2.0 / 3.0)
        return LinkConditions(delay: random.nanoseconds(in: 2_000_000...80_000_000),
                              jitter: random.nanoseconds(in: 0...30_000_000),
                              loss: lossy ? Double(random.next() % 101) / 1000 : 0,
                              duplication: lossy ? Double(random.next() % 31) / 1000 : 0)
    }

    public var description: String {
        "delay=\(delay / 1_000_000)ms jitter=\(jitter / 1_000_000)ms loss=\(loss * 100)% duplication=\(duplication * 100)%"
    }
}
