// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "sous",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sous", targets: ["sous"]),
        .library(name: "SousKit", targets: ["SousKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Pure core: files -> validated values -> rendered commands and plans. No C imports.
        .target(
            name: "SousKit",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            plugins: ["BuildInfo"]
        ),
        // The commit sous is built from, for `sous --version` and the journal.
        .plugin(name: "BuildInfo", capability: .buildTool()),
        // libssh2 headers and link flags; shim.h wraps the function-like macros Swift cannot import.
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),
        // The only module that imports CLibSSH2.
        .target(
            name: "SSH",
            dependencies: ["CLibSSH2", "SousKit"]
        ),
        // The simulated node's modelled tools (docker, systemctl, nvidia-smi) and its fake vLLM.
        .target(
            name: "SousSim",
            dependencies: ["SousKit"]
        ),
        .executableTarget(
            name: "sous",
            dependencies: [
                "SousKit", "SSH", "SousSim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Helpers shared by the test targets: hostile strings, the built binary, local processes.
        .target(name: "SousTestSupport", dependencies: ["SousKit", "SousSim"], path: "Tests/SousTestSupport"),
        .testTarget(name: "SousKitTests", dependencies: ["SousKit", "SousSim", "SousTestSupport"], exclude: ["Golden", "Data", "Fixtures"]),
        .testTarget(name: "SSHTests", dependencies: ["SSH", "SousKit", "SousSim", "SousTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
