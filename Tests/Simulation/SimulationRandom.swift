/// The simulation's one source of chance: SplitMix64 from a seed. Every loss, delay, duplicate,
/// port a NAT allocates and fault a scenario mixes in is drawn from it in event order, so one
/// seed gives one run, bit for bit.
public struct SimulationRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// True with probability `chance` (0…1).
    public mutating func happens(_ chance: Double) -> Bool {
        chance > 0 && Double(next() >> 11) / Double(1 << 53) < chance
    }

    /// 32 random bytes: a key.
    public mutating func key() -> [UInt8] {
        (0..<32).map { _ in UInt8.random(in: 0...255, using: &self) }
    }

    /// A duration uniformly in `range`, in nanoseconds.
    public mutating func nanoseconds(in range: ClosedRange<Int64>) -> Int64 {
        Int64.random(in: range, using: &self)
    }
}
