import CLinux
import Net

/// Runs `body` with a range of `count` + 1 ports on `address` that nothing seemed to use: the
/// range starts at a port the kernel just handed out. Tests running in parallel bind ports of their
/// own meanwhile, so a range can be taken before `body` binds it: `body` is tried again with a new
/// range while it fails with EADDRINUSE, 20 times at most.
public func withFreePortRange<Result>(_ count: UInt16, on address: IPAddress,
                                      _ body: (ClosedRange<UInt16>) throws -> Result) throws -> Result {
    for _ in 0..<20 {
        let probed = try UDPSocket(binding: Endpoint(address, 0)).local.port
        guard probed <= UInt16.max - count else { continue }
        do {
            return try body(probed...(probed + count))
        } catch let error as SystemError where error.errno == EADDRINUSE {
            continue
        }
    }
    throw SystemError("bind", "\(Int(count) + 1) free ports on \(address)", errno: EADDRINUSE)
}
