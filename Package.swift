// swift-tools-version: 6.1
//
// LANrage: NAT traversal for WireGuard on Linux routers.
//
// The shipped `lanrage` executable links only the Swift stdlib (static), libnl and libsodium. Its
// logger, command line and timer heap are its own: swift-log cannot be built in Embedded Swift
// (the ARM router builds), swift-argument-parser pulls in Foundation, and a binary heap is 50 lines.
// Tests and benchmarks may use anything: they are not shipped.
import PackageDescription

/// The shipped code is optimised for size: the agent is for routers. The machines' and the
/// scheduler's hot paths are @inlinable, so they specialise (at -O in the benchmarks) where used.
/// Each function gets a section of its own, so the linker's --gc-sections drops the unused ones
/// (swiftc puts a module's functions in one .text otherwise: -100 KB). Public functions are marked
/// SHF_GNU_RETAIN (kept even when nothing calls them) unless -internalize-at-link says every
/// client is in the same link, which holds: the modules are linked statically into lanrage, the
/// tests and the benchmarks, never loaded as shared libraries (-115 KB).
let optimizeForSize: [SwiftSetting] = [
    .unsafeFlags(["-Osize", "-Xfrontend", "-function-sections", "-Xfrontend", "-internalize-at-link"], .when(configuration: .release)),
    // Optimised in the debug build too: the simulation runs these modules' code millions of times.
    .unsafeFlags(["-O"], .when(configuration: .debug))
]

let package = Package(
    name: "lanrage",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "lanrage", targets: ["lanrage"]),
        // package-benchmark builds each benchmark as a product of its own (`make bench`).
        .executable(name: "StateChartBenchmarks", targets: ["StateChartBenchmarks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // C headers and libraries.
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium"),
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-genl-3.0"),

        // Libraries, one concern each.
        .target(name: "Time", dependencies: ["CLinux"], swiftSettings: optimizeForSize),
        .target(name: "Output", dependencies: ["CLinux", "Time"], swiftSettings: optimizeForSize),
        .target(name: "Commands", dependencies: ["Output", "CLinux"], swiftSettings: optimizeForSize),
        .target(name: "Net", dependencies: ["CLinux", "Time"], swiftSettings: optimizeForSize),
        .target(name: "WireGuard", dependencies: ["CSodium", "CNetlink", "CLinux", "Net", "Time"], swiftSettings: optimizeForSize),
        .target(name: "StateChart", dependencies: ["Output", "Time"], swiftSettings: optimizeForSize),
        .target(name: "Peer", dependencies: ["StateChart", "EventLoop", "Output", "Net", "STUN", "Punch", "Rendezvous", "Time"],
                swiftSettings: optimizeForSize),
        .target(name: "Punch", dependencies: ["Net", "CLinux", "CSodium", "STUN", "Time"], swiftSettings: optimizeForSize),
        .target(name: "Rendezvous", dependencies: ["CSodium", "Net", "STUN", "Time"], swiftSettings: optimizeForSize),
        .target(name: "Relay", dependencies: ["Rendezvous", "Net", "EventLoop", "Output", "Time"],
                swiftSettings: optimizeForSize),
        .target(
            name: "Control",
            dependencies: ["Rendezvous", "Net", "EventLoop", "StateChart", "STUN", "Output", "Time"],
            swiftSettings: optimizeForSize
        ),
        .target(
            name: "EventLoop",
            dependencies: [
                "CLinux", "Net", "StateChart", "Output", "Time",
            ],
            swiftSettings: optimizeForSize
        ),
        .target(name: "STUN", dependencies: ["Net", "StateChart", "EventLoop", "Time"], swiftSettings: optimizeForSize),
        .target(name: "DNS", dependencies: ["CLinux", "CSodium", "Net", "EventLoop", "Output", "Time"], swiftSettings: optimizeForSize),
        // The daemon: binds the peer machines to the real world (the only module that knows every other).
        .target(
            name: "Agent",
            dependencies: [
                "Output", "Net", "StateChart", "Peer", "EventLoop", "Punch", "STUN", "WireGuard", "Rendezvous", "Time",
                "Control", "Relay", "CLinux", "DNS",
            ],
            swiftSettings: optimizeForSize
        ),

        // The command line.
        .executableTarget(
            name: "lanrage",
            dependencies: [
                "Commands", "Output", "Net", "StateChart", "Peer", "EventLoop", "Punch",
                "STUN",
                "WireGuard",
                "Rendezvous", "Relay", "Control", "Agent", "Time", "DNS",
            ],
            // The release link's code order (make order-file), read by the linker only.
            exclude: ["lanrage.order"],
            swiftSettings: optimizeForSize,
            // No dynamic symbol table: nothing looks symbols up in the executable, and exported
            // symbols could not be dropped as unused (-220 KB). Identical functions whose address
            // is never taken are folded into one (-90 KB). Linked by the toolchain's lld, whose
            // packed relative relocations (DT_RELR) replace the 580 KB of R_X86_64_RELATIVE
            // entries a position-independent executable needs with 5 KB, still PIE (-500 KB);
            // the binary then needs glibc 2.36 or newer (Debian 12; the build already needs 2.35).
            // The code the agent runs goes first, side by side (`make order-file`): the kernel maps
            // code 64 KiB around each page run, so spread-out code costs resident memory (-1.4 MiB).
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                                           "-Xlinker", "--no-export-dynamic", "-Xlinker", "--icf=safe",
                                           "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/lanrage/lanrage.order",
                                           "-Xlinker", "--no-warn-symbol-ordering"],
                                          .when(configuration: .release))]
        ),

        // Tests.
        .testTarget(name: "OutputTests", dependencies: ["Time", "Output"]),
        .testTarget(name: "CommandsTests", dependencies: ["Time", "Commands"]),
        .testTarget(name: "NetTests", dependencies: ["Time", "Net"]),
        .testTarget(name: "DNSTests", dependencies: ["Time", "DNS", "Net", "EventLoop"]),
        .testTarget(name: "WireGuardTests", dependencies: ["Time", "WireGuard", "CNetlink", "CSodium", "Net"]),
        .systemLibrary(name: "CMalloc", path: "Tests/CMalloc"),
        .testTarget(name: "STUNTests", dependencies: ["Time", "STUN", "Net", "EventLoop", "CMalloc"]),
        .target(name: "LabSupport", dependencies: ["Time", "Net", "WireGuard", "Rendezvous", "Control"], path: "Tests/LabSupport"),
        // `make demo`: the lab with two members, run end to end.
        .executableTarget(name: "LANrageDemo", dependencies: ["Time", "LabSupport", "Net"], path: "Tests/Demo"),
        // `make lab-bench`: the agent beside Nebula in the NAT lab.
        .executableTarget(name: "AgentLabBench", dependencies: ["Time", "LabSupport", "Net"], path: "Tests/AgentLabBench"),
        .testTarget(name: "STUNLabTests", dependencies: ["Time", "STUN", "Net", "LabSupport"]),
        .testTarget(name: "RendezvousTests", dependencies: ["Time", "Rendezvous", "Net"]),
        .testTarget(name: "RelayTests", dependencies: ["Time", "Relay", "Rendezvous", "Net", "EventLoop", "LabSupport"]),
        .testTarget(name: "RelayLabTests", dependencies: ["Time", "Relay", "Rendezvous", "Control", "Net", "LabSupport"]),
        .testTarget(name: "ControlTests", dependencies: ["Time", "Control", "Relay", "Rendezvous", "STUN", "Net", "EventLoop", "StateChart", "LabSupport", "ChartTestSupport"]),
        .executableTarget(name: "ControlFuzz", dependencies: ["Time", "Control", "Rendezvous", "Net"], path: "Tests/Fuzz/ControlFuzz"),
        .executableTarget(name: "RelayFuzz", dependencies: ["Time", "Rendezvous", "Net"], path: "Tests/Fuzz/RelayFuzz"),
        // The agent's side of the network (make fuzz-client, fuzz-punch, fuzz-relay-client) and the control state file (fuzz-state).
        .target(name: "FuzzSupport", dependencies: ["Time", "Rendezvous", "Net"], path: "Tests/Fuzz/FuzzSupport"),
        .executableTarget(name: "ClientFuzz", dependencies: ["Time", "FuzzSupport", "Control", "EventLoop", "Rendezvous", "Net", "Output"],
                          path: "Tests/Fuzz/ClientFuzz"),
        .executableTarget(name: "PunchFuzz", dependencies: ["Time", "FuzzSupport", "Punch", "Net"], path: "Tests/Fuzz/PunchFuzz"),
        .executableTarget(name: "RelayClientFuzz", dependencies: ["Time", "FuzzSupport", "Relay", "EventLoop", "Rendezvous", "Net"],
                          path: "Tests/Fuzz/RelayClientFuzz"),
        .executableTarget(name: "StateFuzz", dependencies: ["Time", "FuzzSupport", "Control", "Rendezvous", "Net"], path: "Tests/Fuzz/StateFuzz"),
        .executableTarget(name: "RendezvousBench", dependencies: ["Time", "Control", "Rendezvous", "Net", "LabSupport", "WireGuard"], path: "Tests/RendezvousBench"),
        .executableTarget(name: "STUNFuzz", dependencies: ["Time", "STUN", "Net"], path: "Tests/Fuzz/STUNFuzz"),
        .executableTarget(name: "DNSFuzz", dependencies: ["DNS", "FuzzSupport", "Net"], path: "Tests/Fuzz/DNSFuzz"),
        .executableTarget(name: "GatewayFuzz", dependencies: ["Punch", "FuzzSupport", "Net", "Time"], path: "Tests/Fuzz/GatewayFuzz"),
        .executableTarget(
            name: "STUNBenchmarks",
            dependencies: ["Time", "STUN", "Net", .product(name: "Benchmark", package: "benchmark")],
            path: "Tests/Benchmarks/STUNBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .testTarget(name: "StateChartTests", dependencies: ["Time", "StateChart"]),
        // What the chart and scheduler tests share: an executor that records actions.
        .target(name: "ChartTestSupport", dependencies: ["Time", "EventLoop", "StateChart"], path: "Tests/ChartTestSupport"),
        .testTarget(name: "PeerTests", dependencies: ["Time", "Peer", "StateChart", "EventLoop", "ChartTestSupport", "Net", "STUN", "Rendezvous"]),
        .testTarget(name: "EventLoopTests", dependencies: ["Time", "EventLoop", "StateChart", "CLinux", "Net", "ChartTestSupport"]),
        .testTarget(name: "lanrageTests", dependencies: ["Time", "lanrage"]),
        .testTarget(name: "PunchTests", dependencies: ["Time", "Punch", "Net", "CLinux", "STUN", "LabSupport"]),
        .testTarget(name: "AgentTests", dependencies: ["Time", "Agent", "Net", "Rendezvous", "LabSupport"]),
        .testTarget(name: "AgentLabTests", dependencies: ["Time", "STUN", "LabSupport", "Net", "Rendezvous", "Agent", "WireGuard", "Control", "EventLoop"]),
        // Deterministic simulation: the real detector and punch code on a virtual network of NATs (make simulate).
        // Optimised in debug builds too: `make test` runs thousands of scenarios.
        .target(name: "Simulation", dependencies: ["Time", "Net", "STUN", "Punch", "Peer", "Control", "Relay", "CLinux", "Rendezvous", "EventLoop", "StateChart", "Output"],
                path: "Tests/Simulation", swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .testTarget(name: "SimulationTests", dependencies: ["Time", "Simulation", "STUN", "Net", "Punch"]),
        .executableTarget(name: "Simulate", dependencies: ["Time", "Simulation", "STUN", "Punch"], path: "Tests/Simulate"),
        .testTarget(name: "PunchLabTests", dependencies: ["Time", "Punch", "Net", "STUN", "LabSupport", "Peer", "EventLoop", "StateChart", "WireGuard"]),

        // Benchmarks (`make bench`), run through package-benchmark.
        .executableTarget(
            name: "StateChartBenchmarks",
            dependencies: [
                "Time", "StateChart", "EventLoop", "Peer",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Tests/Benchmarks/StateChartBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
