import Foundation
import Simulator
import TestSupport
import Testing

/// The daemon meets a broker that is down, refuses it, or a TLS file that is not there: it says so and keeps
/// polling and storing; nothing stored is lost.
@Suite("Daemon under bad input", .serialized)
struct BadInputTests {
    func config(brokerPort: Int, simulatorPort: Int, mqttExtra: String = "") -> String {
        DaemonConfig.header(mqttPort: brokerPort, keepAlive: "5s", reconnect: ("50ms", "300ms"), mqtt: mqttExtra,
                            batchInterval: "100ms", batchSize: 50)
            + BeltScaleSimulator.exampleDeviceConfig(port: simulatorPort, pollInterval: "100ms")
    }

    func startSimulator(in dir: TemporaryDirectory) async throws -> (PeerProcess, Int) {
        let port = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(port)"], logDirectory: dir.path)
        try await sim.waitForPort(port)
        return (sim, port)
    }

    /// Bytes in the reading ring's segment files.
    func storeSize(_ stateDir: String) -> Int {
        let dir = stateDir + "/readings/segments"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.reduce(0) { $0 + (((try? FileManager.default.attributesOfItem(atPath: dir + "/" + $1))?[.size] as? Int) ?? 0) }
    }

    @Test("broker down at start: readings are stored, and delivered from the first one when the broker comes")
    func brokerDownThenUp() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort) = try await startSimulator(in: dir)
        defer { sim.stop() }
        let persistence = "persistence true\npersistence_location \(dir.path)/\n"

        // The hub's ingester: a persistent session (fixed id, clean session off, QoS 1), as ARCHITECTURE.md asks.
        var broker = try await MosquittoBroker.start(in: dir, extraConfig: persistence)
        let brokerPort = broker.port
        var hub = try await MosquittoSubscriber(in: dir, name: "hub-1", port: brokerPort, topic: "kilntally/#",
                                                extraArguments: ["-c", "-i", "hub-ingester"])
        try await hub.waitUntilSubscribed(broker: broker, topic: "kilntally/#")
        hub.stop()
        broker.stop()

        let path = dir.file("kilntally.toml")
        try config(brokerPort: brokerPort, simulatorPort: simPort).write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", path, "--state-dir", dir.file("state"), "--log-level", "debug"],
                                     logDirectory: dir.path)
        defer { daemon.stop() }
        // Readings pile up on disk while the broker is away.
        try await daemon.waitUntil("readings stored while the broker is down", timeout: .seconds(20)) {
            storeSize(dir.file("state")) > 4000
        }
        #expect(daemon.isRunning)

        broker = try await MosquittoBroker.start(in: dir, name: "mosquitto-2", port: brokerPort, extraConfig: persistence)
        defer { broker.stop() }
        hub = try await MosquittoSubscriber(in: dir, name: "hub-2", port: brokerPort, topic: "kilntally/#",
                                            extraArguments: ["-c", "-i", "hub-ingester"])
        defer { hub.stop() }
        let batches = try await hub.waitForMessages(count: 3, timeout: .seconds(30)) { $0.topic.hasSuffix("/readings") }
            .compactMap { ReadingsMessage($0.payload) }
        #expect(batches.first?.firstSeq == 1, "the backlog starts at the first stored reading")
        let seqs = batches.flatMap(\.readings).compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(1...seqs.max()!), "oldest first, contiguous")
    }

    @Test("wrong password: the error names the broker and the cause; the daemon keeps polling")
    func wrongPassword() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort) = try await startSimulator(in: dir)
        defer { sim.stop() }
        let passwd = dir.file("passwd")
        let mk = try PeerProcess(name: "mosquitto_passwd", executable: "/usr/bin/mosquitto_passwd",
                                 arguments: ["-b", "-c", passwd, "edge", "right-password"], logDirectory: dir.path)
        #expect(try await mk.waitForExit() == 0)
        let broker = try await MosquittoBroker.start(in: dir, allowAnonymous: false, extraConfig: "password_file \(passwd)")
        defer { broker.stop() }
        let path = dir.file("kilntally.toml")
        try config(brokerPort: broker.port, simulatorPort: simPort,
                   mqttExtra: "username = \"edge\"\npassword = \"wrong-password\"")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", path, "--state-dir", dir.file("state")], logDirectory: dir.path)
        defer { daemon.stop() }
        try await daemon.waitUntil("a refusal naming the broker", timeout: .seconds(20)) {
            let log = daemon.log().lowercased()
            return log.contains("127.0.0.1:\(broker.port)") && (log.contains("not authori") || log.contains("bad user name or password"))
        }
        try await daemon.waitUntil("readings stored anyway") { storeSize(dir.file("state")) > 1000 }
        #expect(daemon.isRunning)
    }

    @Test("a tally checkpoint that cannot be decoded: the daemon does not start a fresh tally over the ledger, and says which file")
    func damagedCheckpoint() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("kilntally.toml")
        try (DaemonConfig.header(mqttPort: try FreePort.allocate()) + """
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(try FreePort.allocate())
            [[device]]
            name = "belt"
            bus = "plc"
            unit_id = 1
              [[device.channel]]
              name = "rate"
              table = "holding"
              address = 0
              type = "uint16"
              unit = "t/h"
              role = "rate"
            [[stream]]
            name = "msw"
            material = "msw"
            feed_point = "calciner"
            device = "belt"
            rate = "rate"
            """).write(toFile: path, atomically: true, encoding: .utf8)
        let checkpoint = dir.file("state/tally/checkpoint.json")
        try FileManager.default.createDirectory(atPath: dir.file("state/tally"), withIntermediateDirectories: true)
        try #"{"lastSequence": 12, "streams": {"msw": {}}}"#.write(toFile: checkpoint, atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", path, "--state-dir", dir.file("state")], logDirectory: dir.path)
        defer { daemon.stop() }
        #expect(try await daemon.waitForExit() != 0)
        #expect(daemon.log().contains("the tally checkpoint \(checkpoint) cannot be read"), "\(daemon.log())")
        // Left as it was, for the engineer to look at.
        #expect(try String(contentsOfFile: checkpoint, encoding: .utf8).hasPrefix(#"{"lastSequence": 12"#))
    }

    @Test("missing TLS CA file: the error names the file; the daemon keeps polling and storing")
    func missingTLSFile() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort) = try await startSimulator(in: dir)
        defer { sim.stop() }
        let missing = dir.file("no-such-ca.pem")
        let path = dir.file("kilntally.toml")
        try config(brokerPort: 8883, simulatorPort: simPort, mqttExtra: "[mqtt.tls]\nca_file = \"\(missing)\"")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", path, "--state-dir", dir.file("state")], logDirectory: dir.path)
        defer { daemon.stop() }
        try await daemon.waitUntil("an error naming the CA file", timeout: .seconds(20)) { daemon.log().contains(missing) }
        try await daemon.waitUntil("readings stored anyway") { storeSize(dir.file("state")) > 1000 }
        #expect(daemon.isRunning)
    }

    @Test("an MQTT 5 broker refusing the readings topic: the batch is retried, and all of it arrives once allowed")
    func refusedTopicIsRetried() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort) = try await startSimulator(in: dir)
        defer { sim.stop() }
        // Anonymous clients may read everything but write only the status topic: readings get PUBACK 0x87.
        let acl = dir.file("acl")
        try "topic read kilntally/#\ntopic write kilntally/plant-a/kiln1/status\n".write(toFile: acl, atomically: true, encoding: .utf8)
        let broker = try await MosquittoBroker.start(in: dir, extraConfig: "acl_file \(acl)")
        defer { broker.stop() }
        let hub = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kilntally/#")
        defer { hub.stop() }
        try await hub.waitUntilSubscribed(broker: broker, topic: "kilntally/#")

        let path = dir.file("kilntally.toml")
        try config(brokerPort: broker.port, simulatorPort: simPort, mqttExtra: "protocol = \"5\"")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", path, "--state-dir", dir.file("state")], logDirectory: dir.path)
        defer { daemon.stop() }
        try await daemon.waitUntil("the refusal to be logged", timeout: .seconds(20)) {
            daemon.log().contains("not accepted by the broker")
        }
        #expect(hub.messages().filter { $0.topic.hasSuffix("/readings") }.isEmpty)

        // The hub operator fixes the ACL; mosquitto reloads it on SIGHUP.
        try "topic readwrite kilntally/#\n".write(toFile: acl, atomically: true, encoding: .utf8)
        broker.process.signal(SIGHUP)
        let batches = try await hub.waitForMessages(count: 2, timeout: .seconds(30)) { $0.topic.hasSuffix("/readings") }
            .compactMap { ReadingsMessage($0.payload) }
        #expect(batches.first?.firstSeq == 1, "the refused batch was not skipped")
        let seqs = batches.flatMap(\.readings).compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(1...seqs.max()!))
        #expect(daemon.isRunning)
    }
}
