/// A named condition over a machine's context that decides whether a row applies.
/// The name is what the validator compares and what the chart picture shows.
public struct Guard<Context>: Sendable {
    public let name: String
    @usableFromInline let test: @Sendable (Context) -> Bool

    public init(_ name: String, _ test: @escaping @Sendable (Context) -> Bool) {
        self.name = name
        self.test = test
    }

    /// The negation, named `!name`.
    public static prefix func ! (condition: Guard) -> Guard {
        Guard("!" + condition.name) { !condition.test($0) }
    }
}
