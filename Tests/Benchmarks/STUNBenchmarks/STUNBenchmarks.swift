// STUN codec throughput and allocations: `make bench` (package-benchmark).
import Benchmark
import Net
import STUN

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: .kilo(10)
    )

    // What the client decodes most: a binding success response with XOR-MAPPED-ADDRESS, MAPPED-ADDRESS,
    // RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE and FINGERPRINT, as `lanrage stun-server` sends it.
    let responder = BindingResponder(primary: Endpoint("192.0.2.1:3478")!, alternate: Endpoint("192.0.2.2:3479")!)
    let request = Message.bindingRequest().encoded(fingerprint: true)
    let response = responder.respond(to: request, from: Endpoint("198.51.100.7:51820")!, on: responder.primary)!.bytes

    Benchmark("decode binding response (v4, 6 attributes, FINGERPRINT)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? Message(decoding: response))
        }
    }

    Benchmark("decode binding request (FINGERPRINT)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? Message(decoding: request))
        }
    }

    let message = try! Message(decoding: response)
    Benchmark("encode binding response (FINGERPRINT)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(message.encoded(fingerprint: true))
        }
    }

    Benchmark("encode binding request") { benchmark in
        let id = TransactionID.random()
        for _ in benchmark.scaledIterations {
            blackHole(Message.bindingRequest(transactionID: id).encoded())
        }
    }

    Benchmark("server: decode request, encode response") { benchmark in
        let client = Endpoint("198.51.100.7:51820")!
        for _ in benchmark.scaledIterations {
            blackHole(responder.respond(to: request, from: client, on: responder.primary))
        }
    }
}
