import Agent
import Commands
import DNS
import EventLoop
import Output
import Net
import Time

/// Host names of servers a command was given, resolved before it starts (the agent's resolver,
/// run to completion on a loop of its own).
enum ServerLookup {
    /// The endpoints of `servers`, names resolved to their first IPv4 address; exits 68 naming
    /// the first that does not resolve.
    static func endpoints(_ servers: [ServerAddress]) throws(CommandError) -> [Endpoint] {
        // Each name once, with its outcome when it came (a handful: a list is enough).
        var lookups: [(name: String, outcome: Resolver.Outcome?)] = []
        for server in servers {
            if let name = server.name, !lookups.contains(where: { $0.name == name }) { lookups.append((name, nil)) }
        }
        if !lookups.isEmpty {
            let clock = SystemClock()
            let loop = try failing { () throws(SystemError) in try EventLoop(clock: clock) }
            let resolver = Resolver(loop: loop, clock: clock)
            for index in lookups.indices {
                resolver.resolve(lookups[index].name) { outcome in
                    lookups[index].outcome = outcome
                    if lookups.allSatisfy({ $0.outcome != nil }) { loop.stop() }
                }
            }
            // The resolver gives up on its own (its servers × attempts × timeout); this bounds the wait regardless.
            if !lookups.allSatisfy({ $0.outcome != nil }) {
                try failing { () throws(SystemError) in try loop.run(until: clock.now + Duration.seconds(60).nanoseconds) }
            }
        }
        var endpoints: [Endpoint] = []
        for server in servers {
            guard let name = server.name else {
                endpoints.append(server.endpoint!)
                continue
            }
            switch lookups.first(where: { $0.name == name })?.outcome {
            case .success(let answer)?: endpoints.append(Endpoint(answer.addresses[0], server.port))
            case .failure(let error)?: throw CommandError("\(name) does not resolve: \(error)", exitCode: .noHost)
            case nil: throw CommandError("\(name) does not resolve: no answer within 60 s", exitCode: .noHost)
            }
        }
        return endpoints
    }
}
