import Control
import DNS
import EventLoop
import Net
import Output
import Time

/// The control server's relays given by host name (`--relay relay.example.net:40000`): resolved on
/// its loop and offered by their current addresses; a relay that stopped answering the load
/// queries has its name looked up again every 15 s, so a dynamic-DNS address that changed is followed.
final class RelayNames {
    private let relays: [ServerAddress]
    private let core: ControlCore
    private let names: ServerNames
    static let recheck: Duration = .seconds(15)

    init(_ relays: [ServerAddress], core: ControlCore, loop: EventLoop, clock: any TimeSource, logger: Logger) {
        self.relays = relays
        self.core = core
        let alarms = Alarms(clock: clock)
        loop.addTimers(alarms)
        names = ServerNames(resolver: Resolver(loop: loop, clock: clock), alarms: alarms, logger: logger)
        names.onResolved = { [unowned(unsafe) self] _, moved in
            if moved { self.core.updateRelays(self.relays.compactMap { self.names.endpoint($0) }) }
        }
        loop.addTimers(Ticker(every: Self.recheck, clock: clock) { [unowned(unsafe) self] in
            let silent = self.core.silentRelays(at: clock.unixMillis)
            for relay in self.relays {
                guard let name = relay.name, let endpoint = self.names.endpoint(relay), silent.contains(endpoint) else { continue }
                self.names.resolve(name)
            }
        })
        for relay in relays { if let name = relay.name { names.resolve(name) } }
    }
}
