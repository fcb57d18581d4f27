// swift-tools-version: 6.1
//
// Airlock — a secure execution substrate for AI agents on Linux.
// The targets mirror the layers of shared/DESIGN.md: one library per layer,
// a thin `airlock` executable, and one small C target (`airlock-sandbox`),
// the single-threaded helper that enters the sandbox.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6)
]

let package = Package(
    name: "airlock",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "airlock", targets: ["airlock"]),
        .executable(name: "airlock-sandbox", targets: ["airlock-sandbox"]),
        .executable(name: "airlock-bench", targets: ["airlock-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // OTLP/HTTP only: the gRPC exporter (and its build) is left out.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // The control plane's HTTP server; neither of its default traits (swift-configuration,
        // full Foundation) is needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
    ],
    targets: [
        // Shared vocabulary: errors, units, the SandboxSpec contract between layers.
        .target(name: "AirlockCore", swiftSettings: strict),
        // Layer 2: profiles in YAML, validation, resolution into a SandboxSpec. Pure values.
        .target(
            name: "AirlockPolicy",
            dependencies: ["AirlockCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict),
        // Secret and credential detection: the audit log redacts with it, the egress
        // gateway blocks with it.
        .target(name: "AirlockDLP", swiftSettings: strict),
        // Layer 8's vocabulary: normalized boundary events, their JSON and their sinks. Pure:
        // what the runtime, the gateway and telemetry need to emit, without the log's
        // storage and crypto.
        .target(name: "AirlockEvents", dependencies: ["AirlockCore"], swiftSettings: strict),
        // Layer 8: the tamper-evident audit log (hash chain, Ed25519 checkpoints, group
        // commit, SQLite index).
        .target(
            name: "AirlockAudit",
            dependencies: [
                "AirlockCore", "AirlockEvents",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict),
        // Layer 8 (telemetry out): OTLP/HTTP traces per sandbox and Prometheus metrics.
        .target(
            name: "AirlockTelemetry",
            dependencies: [
                "AirlockCore", "AirlockEvents",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // Layer 4: the egress gateway. Decision/ is pure (host and address canonicalisation,
        // rules, ClientHello parsing); Gateway/ is the SwiftNIO proxy behind a sandbox's
        // airlock socket; TLS/ is the per-sandbox CA for inspected hosts.
        .target(
            name: "AirlockEgress",
            dependencies: [
                "AirlockCore", "AirlockEvents", "AirlockDLP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict),
        // Layer 1: the namespace runtime (helper launch, cgroups, seccomp, Landlock plan).
        .target(
            name: "AirlockRuntime",
            dependencies: ["AirlockCore", "AirlockEvents", "CAirlockShim", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // Layers 7 and 9: `airlock serve` — the supervisor of long-lived sandboxes, the store
        // (SQLite through GRDB), the vault (sealed workspaces and snapshots), the HTTP API.
        .target(
            name: "AirlockControl",
            dependencies: [
                "AirlockCore", "AirlockPolicy", "AirlockRuntime", "AirlockAudit", "AirlockDLP", "AirlockEgress", "CAirlockShim",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: strict),
        // The CLI's commands, one file per subcommand.
        .target(
            name: "AirlockCommands",
            dependencies: [
                "AirlockCore", "AirlockPolicy", "AirlockRuntime", "AirlockAudit", "AirlockDLP", "AirlockTelemetry", "AirlockEgress", "CAirlockShim",
                "AirlockControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(name: "airlock", dependencies: ["AirlockCommands"], swiftSettings: strict),
        // The one C target: the sandbox helper's syscall-level code and the few Linux
        // calls Swift's Glibc module hides.
        .target(
            name: "CAirlockShim",
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-O2", "-Wall", "-Wextra", "-Werror"])]),
        // The single-threaded helper that builds the sandbox and becomes its PID 1.
        .executableTarget(
            name: "airlock-sandbox", dependencies: ["CAirlockShim"],
            // Pure C: drop the Swift runtime the link driver adds, so the helper starts in ~1 ms.
            linkerSettings: [.unsafeFlags(["-static-executable"])]),
        .executableTarget(
            name: "airlock-bench",
            dependencies: [
                "AirlockCore", "AirlockAudit", "AirlockDLP", "AirlockEgress", "AirlockControl",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict),
        // Helpers the test targets share (a seeded generator for the fuzz tests).
        .target(
            name: "AirlockTestSupport",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/AirlockTestSupport", swiftSettings: strict),
        .testTarget(name: "AirlockPolicyTests", dependencies: ["AirlockPolicy", "AirlockTestSupport"], swiftSettings: strict),
        .testTarget(name: "AirlockTelemetryTests", dependencies: ["AirlockTelemetry", "AirlockAudit"], swiftSettings: strict),
        .testTarget(name: "AirlockDLPTests", dependencies: ["AirlockDLP", "AirlockTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "AirlockAuditTests", dependencies: ["AirlockAudit", .product(name: "Crypto", package: "swift-crypto"), "airlock-bench"],
            swiftSettings: strict),
        .testTarget(name: "AirlockEgressTests", dependencies: ["AirlockEgress", "AirlockTestSupport"], swiftSettings: strict),
        .testTarget(name: "AirlockRuntimeTests", dependencies: ["AirlockRuntime"], swiftSettings: strict),
        .testTarget(
            name: "AirlockControlTests",
            dependencies: ["AirlockControl", "AirlockRuntime", "AirlockPolicy", "AirlockTestSupport", "airlock", "airlock-sandbox"],
            swiftSettings: strict),
        .testTarget(
            name: "AirlockSandboxTests",
            dependencies: ["AirlockRuntime", "AirlockPolicy", "AirlockTestSupport", "airlock", "airlock-sandbox"],
            swiftSettings: strict),
    ]
)
