// swift-tools-version: 6.1
//
// LANrage: NAT traversal for WireGuard on Linux routers.
//
// The shipped `lanrage` executable links only the Swift stdlib (static), swift-log,
// HeapModule, libnl and libsodium — see ../shared/DESIGN.md, "Dependencies and footprint".
// Tests and benchmarks may use anything: they are not shipped.
import PackageDescription

/// Release builds specialise generic code (machines, scheduler) across module boundaries:
/// the hot path of a transition then allocates nothing and calls no witness tables.
let crossModuleOptimization: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "lanrage",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "lanrage", targets: ["lanrage"]),
        // package-benchmark builds each benchmark as a product of its own (`make bench`).
        .executable(name: "StateChartBenchmarks", targets: ["StateChartBenchmarks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // C headers and libraries.
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium"),

        // Libraries, one concern each.
        .target(name: "Output", dependencies: [.product(name: "Logging", package: "swift-log")]),
        .target(name: "Commands", dependencies: ["Output"]),
        .target(name: "Net", dependencies: ["CLinux"]),
        .target(name: "StateChart", dependencies: ["Output"], swiftSettings: crossModuleOptimization),
        .target(name: "Peer", dependencies: ["StateChart"], swiftSettings: crossModuleOptimization),
        .target(name: "Punch", dependencies: ["Net", "CLinux", "CSodium", "STUN"]),
        .target(
            name: "EventLoop",
            dependencies: [
                "CLinux", "StateChart",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "STUN", dependencies: ["Net", "StateChart"], swiftSettings: [.unsafeFlags(["-Osize"], .when(configuration: .release))]),

        // The command line.
        .executableTarget(
            name: "lanrage",
            dependencies: [
                "Commands", "Output", "Net", "StateChart", "Peer", "EventLoop", "Punch",
                "STUN",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Tests.
        .testTarget(name: "OutputTests", dependencies: ["Output"]),
        .testTarget(name: "CommandsTests", dependencies: ["Commands"]),
        .testTarget(name: "NetTests", dependencies: ["Net"]),
        .testTarget(name: "STUNTests", dependencies: ["STUN", "Net"]),
        .target(name: "LabSupport", dependencies: ["Net"], path: "Tests/LabSupport"),
        .testTarget(name: "STUNLabTests", dependencies: ["STUN", "Net", "LabSupport"]),
        .executableTarget(name: "STUNFuzz", dependencies: ["STUN", "Net"], path: "Tests/Fuzz/STUNFuzz"),
        .executableTarget(
            name: "STUNBenchmarks",
            dependencies: ["STUN", "Net", .product(name: "Benchmark", package: "benchmark")],
            path: "Tests/Benchmarks/STUNBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .testTarget(name: "StateChartTests", dependencies: ["StateChart"]),
        .testTarget(name: "PeerTests", dependencies: ["Peer", "StateChart", "EventLoop"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "StateChart", "CLinux"]),
        .testTarget(name: "lanrageTests", dependencies: ["lanrage"]),
        .testTarget(name: "PunchTests", dependencies: ["Punch", "Net", "CLinux", "CSodium", "STUN", "LabSupport"]),

        // Benchmarks (`make bench`), run through package-benchmark.
        .executableTarget(
            name: "StateChartBenchmarks",
            dependencies: [
                "StateChart", "EventLoop", "Peer",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/Benchmarks/StateChartBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
