// swift-tools-version: 6.0
import PackageDescription

// Layers, arrows pointing one way:
//   executables (ferry) -> FerryEngine -> FerryTransport / FerryStore -> FerryCore
// C code lives only in the C* targets; each is wrapped by exactly one Swift module.
let package = Package(
    name: "Ferry",
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
        .library(name: "FerryEngine", targets: ["FerryEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // ---- system libraries and shims -----------------------------------
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "CCurlShim", dependencies: ["CCurl"]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // ---- the model: pure Swift, no I/O ------------------------------------
        .target(name: "FerryCore"),

        // ---- parts ----------------------------------------------------------------
        .target(name: "FerryTransport", dependencies: ["FerryCore", "CCurl", "CCurlShim"]),
        .target(name: "FerryStore", dependencies: ["FerryCore", "CSQLite"]),

        // ---- the engine -------------------------------------------------------------
        .target(
            name: "FerryEngine",
            dependencies: [
                "FerryCore", "FerryTransport", "FerryStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // ---- executables ------------------------------------------------------------
        .executableTarget(
            name: "ferry",
            dependencies: [
                "FerryEngine",
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
            dependencies: ["FerryEngine", "FerryCore", "FerryTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "FerryIntegrationTests", dependencies: ["FerryTestSupport", "FerryStore", "FerryCore"]),
    ]
)
