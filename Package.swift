// swift-tools-version: 6.0
import PackageDescription

// Layers, arrows pointing one way (docs/architecture.md draws them):
//   executables: ferry -> FerryEngine, FerryControl; ferryd -> FerryAgent -> FerryEngine, FerryControl
//   engine:      FerryEngine (Engine and its parts) -> FerryTransport, FerryStore, FerryCrypto, FerryPluginHost
//   model:       every Swift module above -> FerryCore (jobs, the state machine, the scheduler, input rules)
// C code lives only in the C* targets; each is wrapped by exactly one Swift module.
let package = Package(
    name: "Ferry",
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
        .executable(name: "ferryd", targets: ["ferryd"]),
        .executable(name: "ferry-plugin-helper", targets: ["ferry-plugin-helper"]),
        .library(name: "FerryEngine", targets: ["FerryEngine"]),
        // Built-in plugins: shared objects the agent loads with dlopen (libferry-<name>.so).
        .library(name: "ferry-sha256", type: .dynamic, targets: ["FerrySHA256Plugin"]),
        .library(name: "ferry-size", type: .dynamic, targets: ["FerrySizePlugin"]),
        .library(name: "ferry-signature", type: .dynamic, targets: ["FerrySignaturePlugin"]),
        .library(name: "ferry-range-fallback", type: .dynamic, targets: ["FerryRangeFallbackPlugin"]),
        .library(name: "ferry-retry-backoff", type: .dynamic, targets: ["FerryRetryBackoffPlugin"]),
        .library(name: "ferry-mirror-failover", type: .dynamic, targets: ["FerryMirrorFailoverPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
    ],
    targets: [
        // ---- system libraries and shims -----------------------------------
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "CCurlShim", dependencies: ["CCurl"]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "CFerrySystem"),
        // Marks a plugin call's record when a fatal signal ends the process during it.
        .target(name: "CPluginGuard"),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // The public plugin ABI: one C header, nothing else.
        .target(name: "FerryPluginABI"),

        // ---- the model: pure Swift, no I/O ------------------------------------
        .target(name: "FerryCore"),

        // ---- parts ----------------------------------------------------------------
        .target(name: "FerryTransport", dependencies: ["FerryCore", "CCurl", "CCurlShim"]),
        .target(name: "FerryStore", dependencies: ["FerryCore", "CSQLite"]),
        .target(name: "FerryCrypto", dependencies: ["CCrypto"]),
        // Writing plugins in Swift: each plugin links its own copy.
        .target(name: "FerryPluginKit", dependencies: ["FerryPluginABI"]),
        .target(
            name: "FerryPluginHost",
            dependencies: ["FerryCore", "FerryPluginABI", "CPluginGuard", .product(name: "Logging", package: "swift-log")]
        ),

        // ---- the engine -------------------------------------------------------------
        .target(
            name: "FerryEngine",
            dependencies: [
                "FerryCore", "FerryTransport", "FerryStore", "FerryCrypto", "FerryPluginHost", "CFerrySystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // ---- the control API's documents and client, shared by ferryd and ferry
        .target(name: "FerryControl", dependencies: ["FerryCore", "FerryTransport"]),

        // ---- the agent: configuration, control API, notifications, isolation
        .target(
            name: "FerryAgent",
            dependencies: [
                "FerryEngine", "FerryCore", "FerryPluginHost", "FerryControl", "FerryStore", "CFerrySystem",
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // ---- built-in plugins (never a dependency of another target: each defines ferry_plugin_v1)
        .target(name: "FerrySHA256Plugin", dependencies: ["FerryPluginKit", "FerryCrypto"], path: "Plugins/sha256"),
        .target(name: "FerrySizePlugin", dependencies: ["FerryPluginKit"], path: "Plugins/size"),
        .target(name: "FerrySignaturePlugin", dependencies: ["FerryPluginKit", "FerryCrypto"], path: "Plugins/signature"),
        .target(name: "FerryRangeFallbackPlugin", dependencies: ["FerryPluginKit", "FerryPluginABI"], path: "Plugins/range-fallback"),
        .target(name: "FerryRetryBackoffPlugin", dependencies: ["FerryPluginKit", "FerryPluginABI"], path: "Plugins/retry-backoff"),
        .target(name: "FerryMirrorFailoverPlugin", dependencies: ["FerryPluginKit", "FerryPluginABI"], path: "Plugins/mirror-failover"),

        // ---- executables ------------------------------------------------------------
        .executableTarget(
            name: "ferry",
            dependencies: [
                "FerryEngine", "FerryControl", "FerryCore", "FerryStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Runs one plugin in a process of its own, for `isolation: process`.
        .executableTarget(
            name: "ferry-plugin-helper",
            dependencies: ["FerryPluginHost", .product(name: "Logging", package: "swift-log")]
        ),

        .executableTarget(
            name: "ferryd",
            dependencies: [
                "FerryAgent", "FerryEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // ---- tests ------------------------------------------------------------------
        .target(name: "FerryTestSupport", path: "Tests/FerryTestSupport"),
        .testTarget(name: "FerryCoreTests", dependencies: ["FerryCore"]),
        .testTarget(name: "FerryStoreTests", dependencies: ["FerryStore", "FerryCore"]),
        .testTarget(
            name: "FerryEngineTests",
            dependencies: [
                "FerryEngine", "FerryCore", "FerryCrypto", "FerryPluginHost", "FerryPluginABI", "FerryTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "FerryAgentTests",
            dependencies: [
                "FerryAgent", "FerryEngine", "FerryPluginHost", "FerryControl", "FerryCore", "FerryTestSupport",
                // The routes run in process for the tests that need no socket.
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "FerryCryptoTests", dependencies: ["FerryCrypto", "FerryTestSupport"]),
        // The transport alone, against the loopback fault server.
        .testTarget(name: "FerryTransportTests", dependencies: ["FerryTransport", "FerryCore", "FerryTestSupport"]),
        // The plugin host alone: its ABI rules, without an engine.
        .testTarget(name: "FerryPluginHostTests", dependencies: ["FerryPluginHost", "FerryPluginABI", "FerryCore"]),
        .testTarget(name: "FerryCLITests", dependencies: ["FerryTestSupport"]),
        // The docs' console examples, read from README.md and docs/ and run through the binaries.
        .testTarget(name: "FerryDocTests", dependencies: ["FerryTestSupport", "FerryControl", "FerryCrypto"]),
        .testTarget(name: "FerryIntegrationTests", dependencies: ["FerryTestSupport", "FerryStore", "FerryCore"]),
    ]
)
