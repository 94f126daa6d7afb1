// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "kilntally",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kilntallyd", targets: ["kilntallyd"]),
        .executable(name: "kilntally", targets: ["kilntally"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C libraries, found with pkg-config. Only the thin owners in ModbusKit/MQTTKit import them.
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus", providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),

        // Small syscall shims Swift's Glibc module does not expose (adjtimex).
        .target(name: "CSysShims"),
        // Shared value types (Reading, Quality, Event, Unit, Clock) and the one config loader.
        .target(name: "KilnTallyCore", dependencies: [
            "CSysShims",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        // Owns modbus_t*: TCP/RTU read-only client, server for the simulator, typed errors.
        .target(name: "ModbusKit", dependencies: [
            "CModbus", "CSysShims",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Owns struct mosquitto*: connect, TLS, will, publish-with-ack, reconnect.
        .target(name: "MQTTKit", dependencies: [
            "CMosquitto",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Buses, devices, channels, decoding and polling.
        .target(name: "Acquisition", dependencies: [
            "SerialScale",
            "KilnTallyCore", "ModbusKit",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Serial ASCII weighbridge indicators (Toledo continuous, Yaohua TF0, XK3190-A12): pure stream parsers, their
        // encoders, and the mapping of frames to the readings a Modbus weighbridge gives.
        .target(name: "SerialScale", dependencies: ["KilnTallyCore"]),
        // File-backed reading store (the skeleton's; issue 4 replaces it with the ring).
        .target(name: "RingStore", dependencies: [
            "KilnTallyCore",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // MQTT topic tree, payload envelopes, store-and-forward publisher.
        .target(name: "Uplink", dependencies: [
            "KilnTallyCore", "MQTTKit", "RingStore",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Simulated devices served with libmodbus.
        .target(name: "Simulator", dependencies: [
            "KilnTallyCore", "ModbusKit", "Acquisition", "SerialScale", "CSysShims",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Per-shift accounting: shift calendar, totalizers, integration, weighbridge tickets, reports, hash chain.
        // Pure and deterministic: readings and clock ticks in, records and a checkpoint out; no Modbus, MQTT, files.
        .target(name: "Tally", dependencies: ["KilnTallyCore"]),
        // Wires the services together.
        .target(name: "KilnTallyDaemon", dependencies: [
            "KilnTallyCore", "Acquisition", "RingStore", "Uplink", "Tally",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "kilntallyd", dependencies: [
            "KilnTallyDaemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "kilntally", dependencies: [
            "KilnTallyDaemon", "Simulator", "RingStore", "Acquisition", "Tally", "SerialScale",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmarks (run by hand: swift run -c release store-benchmark); figures go in issue notes.
        .executableTarget(name: "store-benchmark", dependencies: [
            "RingStore", "KilnTallyCore", .product(name: "Logging", package: "swift-log"),
        ], path: "Benchmarks/StoreBenchmark"),
        // swift run -c release acquisition-benchmark [planner|cycle|decode N|tally N|cadence]; Benchmarks/callgrind.sh for
        // instructions per reading. Uses the test harness' socat pty pair (run deploy/setup.sh first).
        .executableTarget(name: "acquisition-benchmark", dependencies: [
            "Acquisition", "KilnTallyCore", "KilnTallyDaemon", "ModbusKit", "MQTTKit", "RingStore", "SerialScale", "Simulator",
            "Tally", "TestSupport", "Uplink", .product(name: "Logging", package: "swift-log"),
        ], path: "Benchmarks/AcquisitionBenchmark"),

        // Test harness: starts real peers (pymodbus, socat, mosquitto) on free ports and stops them by PID.
        .target(name: "TestSupport", dependencies: ["KilnTallyCore"], path: "Tests/TestSupport"),
        .testTarget(name: "KilnTallyCoreTests", dependencies: ["KilnTallyCore"]),
        .testTarget(name: "ModbusKitTests", dependencies: ["ModbusKit", "TestSupport"]),
        .testTarget(name: "MQTTKitTests", dependencies: ["MQTTKit", "TestSupport", "MQTTWillClient"]),
        .executableTarget(name: "MQTTWillClient", dependencies: ["MQTTKit", .product(name: "Logging", package: "swift-log")], path: "Tests/MQTTWillClient"),
        .testTarget(name: "AcquisitionTests", dependencies: [
            "Acquisition", "KilnTallyCore", "ModbusKit", "Simulator", "TestSupport", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SerialScaleTests", dependencies: [
            "SerialScale", "KilnTallyCore", "ModbusKit", "Simulator", "Tally", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "TallyTests", dependencies: ["Tally", "KilnTallyCore", "TestSupport"]),
        .testTarget(name: "RingStoreTests", dependencies: ["RingStore", "KilnTallyCore", "TestSupport", "RingStoreCrashWriter"]),
        // Appends to a ring store until killed; the crash-loop test kills it with SIGKILL at random moments.
        .executableTarget(name: "RingStoreCrashWriter", dependencies: ["RingStore", "TestSupport",
                                                                       .product(name: "Logging", package: "swift-log")],
                          path: "Tests/RingStoreCrashWriter"),
        // The MQTT contract: schemas/ and asyncapi/ against the payloads the code makes (Tests/peers/schema_check.py).
        .testTarget(name: "ContractTests", dependencies: ["Uplink", "Tally", "KilnTallyCore", "TestSupport"]),
        .testTarget(name: "SkeletonTests", dependencies: [
            "KilnTallyCore", "KilnTallyDaemon", "MQTTKit", "Simulator", "TestSupport", "RingStore", "Tally", "Uplink",
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
