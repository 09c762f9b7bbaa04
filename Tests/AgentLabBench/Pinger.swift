import Foundation
import LabSupport
import Net
import Time

/// ICMP echo from inside a namespace on a raw socket, to time the first answer from each of some
/// overlay addresses. Echoes are sent before the overlay is up too: the sends that fail (no route
/// yet) are simply repeated at the next tick.
final class Pinger {
    private let descriptor: Int32
    /// Distinguishes this pinger's echoes from any other ICMP the namespace sees.
    private let identifier = UInt16.random(in: 1...UInt16.max)

    init(in namespace: Namespace) throws {
        descriptor = try namespace.inside { socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP)) }
        guard descriptor >= 0 else { throw SystemError("socket", "raw ICMP in \(namespace)") }
    }

    deinit { close(descriptor) }

    /// Sends an echo to every target that has not answered yet, every `interval`, until all have
    /// answered or `limit` has passed (or the bench is interrupted); returns the monotonic time of
    /// each target's first answer.
    func firstAnswers(from targets: [IPv4Address], every interval: Duration, within limit: Duration) throws -> [IPv4Address: Duration] {
        var answered: [IPv4Address: Duration] = [:]
        let wanted = Set(targets)
        let deadline = MonotonicTime.now() + limit
        var nextSend = MonotonicTime.now()
        var sequence: UInt16 = 0
        while answered.count < wanted.count, MonotonicTime.now() < deadline, !Interrupt.requested {
            if MonotonicTime.now() >= nextSend {
                sequence &+= 1
                let echo = Self.echo(identifier: identifier, sequence: sequence)
                for target in targets where answered[target] == nil {
                    _ = echo.withUnsafeBytes { bytes in
                        Endpoint(.v4(target), 0).withSockAddr { sendto(descriptor, bytes.baseAddress, bytes.count, 0, $0, $1) }
                    }
                }
                nextSend += interval
            }
            _ = try Readiness.readable([descriptor], timeout: max(.zero, min(nextSend, deadline) - MonotonicTime.now()))
            while let source = receiveAnswer() {
                if wanted.contains(source), answered[source] == nil { answered[source] = MonotonicTime.now() }
            }
        }
        return answered
    }

    /// The source of the next queued echo reply to this pinger, skipping anything else; nil when none is queued.
    private func receiveAnswer() -> IPv4Address? {
        var buffer = [UInt8](repeating: 0, count: 1500)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { return nil }
            // A raw ICMP socket hands over the IP header too.
            let header = Int(buffer[0] & 0x0F) * 4
            guard count >= header + 8, buffer[header] == 0,
                  UInt16(buffer[header + 4]) << 8 | UInt16(buffer[header + 5]) == identifier else { continue }
            return IPv4Address(buffer[12], buffer[13], buffer[14], buffer[15])
        }
    }

    /// An ICMP echo request (type 8) with its checksum.
    private static func echo(identifier: UInt16, sequence: UInt16) -> [UInt8] {
        var packet: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xFF), UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        packet += Array("lanrage-bench".utf8)
        var sum: UInt32 = 0
        for index in stride(from: 0, to: packet.count, by: 2) {
            sum += UInt32(packet[index]) << 8 | UInt32(index + 1 < packet.count ? packet[index + 1] : 0)
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        packet[2] = UInt8(checksum >> 8)
        packet[3] = UInt8(checksum & 0xFF)
        return packet
    }
}
