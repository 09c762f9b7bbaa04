import Foundation
import Net

extension Lab {
    /// Starts `wireguard-go` for a new interface in `namespace`, listening on `port` with a fresh
    /// private key (set with `wg`), link up. Stopped by PID at shutdown; its link is deleted with
    /// the namespace. Interface names must be unique on the host: UAPI sockets are global.
    @discardableResult
    public func startWireGuardGo(in namespace: Namespace, interface: String, listenPort port: UInt16) throws -> Process {
        let process = try spawn(in: namespace, ["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                                                "wireguard-go", "-f", interface], log: "\(interface).log")
        let socket = "/var/run/wireguard/\(interface).sock"
        let deadline = Date().addingTimeInterval(5)
        while !FileManager.default.fileExists(atPath: socket) {
            guard Date() < deadline, process.isRunning else {
                throw CommandFailure(command: ["wireguard-go", interface], status: 1, output: "no \(socket) after 5 s")
            }
            usleep(20_000)
        }
        let key = directory.appendingPathComponent("\(interface).key")
        try LabSupport.run(["wg", "genkey"]).write(to: key, atomically: true, encoding: .utf8)
        try namespace.run("wg", "set", interface, "listen-port", "\(port)", "private-key", key.path)
        try namespace.run("ip", "link", "set", interface, "up")
        try namespace.waitForUDPListener(Endpoint(.v4(IPv4Address(0)), port))
        return process
    }
}
