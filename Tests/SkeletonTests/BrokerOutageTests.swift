import Foundation
import Simulator
import TestSupport
import Testing

/// The edge side of the delivery guarantee, with the hub broker misbehaving: restarted with SIGTERM (persistence on)
/// several times, then killed with SIGKILL, while a persistent-session hub subscriber listens. Every reading the
/// broker acknowledged reaches the hub at least once, in order; a re-sent one carries the same sequence number and
/// content; nothing after the last acknowledgement is lost (the cursor re-sends it).
@Suite("Broker outages", .serialized)
struct BrokerOutageTests {
    @Test("broker restarted three times with SIGTERM and once killed with SIGKILL: every acknowledged reading reaches a persistent hub session, in order")
    func brokerRestartsAndKill() async throws {
        let dir = try TemporaryDirectory()
        let persistence = dir.file("broker-db") + "/"
        try FileManager.default.createDirectory(atPath: persistence, withIntermediateDirectories: true)
        // Persistence on, saved on every change, so the hub's session and queue survive even a SIGKILL.
        let brokerConfig = "persistence true\npersistence_location \(persistence)\nautosave_interval 1\nautosave_on_changes true\n"
        var broker = try await MosquittoBroker.start(in: dir, name: "broker-0", extraConfig: brokerConfig)
        let port = broker.port
        defer { broker.stop() }
        // The hub: a persistent session (fixed client id, clean session off, QoS 1).
        let hub = try await MosquittoSubscriber(in: dir, name: "hub", port: port, topic: "kilntally/plant-a/kiln1/readings",
                                                extraArguments: ["-c", "-i", "hub-ingester"])
        defer { hub.stop() }
        try await hub.waitUntilSubscribed(broker: broker, topic: "kilntally/plant-a/kiln1/readings")

        let simPort = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(simPort)"], logDirectory: dir.path)
        defer { sim.stop() }
        try await sim.waitForPort(simPort)
        let config = DaemonConfig.header(mqttPort: port, keepAlive: "5s", reconnect: ("50ms", "300ms"), batchInterval: "100ms", batchSize: 50)
            + BeltScaleSimulator.exampleDeviceConfig(port: simPort, pollInterval: "100ms")
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        let stateDir = dir.file("state")
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", stateDir], logDirectory: dir.path)
        defer { daemon.stop() }
        _ = try await hub.waitForMessages(count: 2, timeout: .seconds(20))

        for round in 1...4 {
            try await Task.sleep(for: .milliseconds(1_500))
            if round < 4 {
                broker.stop()  // SIGTERM: mosquitto saves its database and exits
            } else {
                broker.process.killHard()  // SIGKILL
            }
            try await Task.sleep(for: .milliseconds(800))
            broker = try await MosquittoBroker.start(in: dir, name: "broker-\(round)", port: port, extraConfig: brokerConfig)
        }
        try await Task.sleep(for: .milliseconds(1_500))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.log())")
        #expect(daemon.log().components(separatedBy: "connected to MQTT broker").count - 1 >= 5, "the daemon reconnected after each outage")

        // Everything the broker acknowledged (the cursor) is at the hub.
        let cursorText = try String(contentsOfFile: stateDir + "/readings/cursors/uplink-readings", encoding: .utf8)
        let acked = try #require(Int(cursorText.split(separator: "\n").last.map(String.init) ?? ""))
        #expect(acked > 100, "the uplink acknowledged \(acked) readings")
        try await hub.process.waitUntil("the hub has every acknowledged reading", timeout: .seconds(20)) {
            Set(self.received(hub).map(\.seq)).isSuperset(of: 1...acked)
        }
        let received = self.received(hub)
        // In order: the first arrival of each sequence number comes after the first arrival of the one before.
        var firstArrival: [Int: Int] = [:]
        for (i, r) in received.enumerated() where firstArrival[r.seq] == nil { firstArrival[r.seq] = i }
        let outOfOrder = (2...acked).filter { firstArrival[$0]! < firstArrival[$0 - 1]! }
        #expect(outOfOrder.isEmpty, "out of order: \(outOfOrder.prefix(10))")
        // A duplicate is the same reading again (same sequence number, same content).
        var bySeq: [Int: String] = [:]
        for r in received {
            if let earlier = bySeq[r.seq] { #expect(earlier == r.content, "seq \(r.seq) re-sent with other content") } else { bySeq[r.seq] = r.content }
        }
    }

    @Test("a long outage costs disk, not memory: the daemon's RSS stays flat while readings keep arriving and the broker is away")
    func memoryFlatDuringOutage() async throws {
        let dir = try TemporaryDirectory()
        let simPort = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(simPort)"], logDirectory: dir.path)
        defer { sim.stop() }
        try await sim.waitForPort(simPort)
        // Nobody listens on the broker's port: every connection attempt is refused, for the whole test.
        let config = DaemonConfig.header(mqttPort: try FreePort.allocate(), reconnect: ("20ms", "100ms"), batchInterval: "50ms")
            + BeltScaleSimulator.exampleDeviceConfig(port: simPort, pollInterval: "10ms")
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", dir.file("state")],
                                     logDirectory: dir.path)
        defer { daemon.stop() }
        func rssKB() throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        func stored() -> Int {
            let segments = dir.file("state/readings/segments")
            return ((try? FileManager.default.contentsOfDirectory(atPath: segments)) ?? []).reduce(0) {
                $0 + (((try? FileManager.default.attributesOfItem(atPath: segments + "/" + $1))?[.size] as? Int) ?? 0)
            }
        }
        // Warm-up (allocator pools, dictionaries, the first segment), then the outage goes on.
        try await Task.sleep(for: .seconds(4))
        let (rss0, bytes0) = (try rssKB(), stored())
        try await Task.sleep(for: .seconds(12))
        let (rss1, bytes1) = (try rssKB(), stored())
        #expect(daemon.isRunning)
        #expect(bytes1 > bytes0 + 20_000, "readings kept arriving: store \(bytes0) -> \(bytes1) bytes")
        #expect(rss1 - rss0 < 3_000, "RSS grew from \(rss0) kB to \(rss1) kB during the outage")
    }

    @Test("a broker that is not there: why, in the log once (not at every attempt) and in status; uplink_down and uplink_up in the ledger once it is back")
    func unreachableBrokerIsExplained() async throws {
        let dir = try TemporaryDirectory()
        let simPort = try FreePort.allocate(), brokerPort = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(simPort)"], logDirectory: dir.path)
        defer { sim.stop() }
        try await sim.waitForPort(simPort)
        let config = DaemonConfig.header(mqttPort: brokerPort, reconnect: ("20ms", "100ms"), batchInterval: "50ms")
            + BeltScaleSimulator.exampleDeviceConfig(port: simPort, pollInterval: "100ms")
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        let socket = dir.file("ctl.sock")
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", dir.file("state"), "--socket", socket],
                                     logDirectory: dir.path)
        defer { daemon.stop() }
        func cli(_ args: [String]) async throws -> String {
            let p = try PeerProcess(name: "kilntally-\(UUID().uuidString.prefix(6))", executable: try RepoPaths.builtProduct("kilntally"),
                                    arguments: args + ["--socket", socket], logDirectory: dir.path)
            let status = try await p.waitForExit(timeout: .seconds(20))
            try #require(status == 0, "\(args): \(p.log())")
            return p.log()
        }
        func uplink() async throws -> [String: Any] {
            let status = try JSONSerialization.jsonObject(with: Data(try await cli(["status", "--json"]).utf8)) as? [String: Any]
            return status?["uplink"] as? [String: Any] ?? [:]
        }
        try await daemon.waitUntil("the control socket", timeout: .seconds(15)) { FileManager.default.fileExists(atPath: socket) }
        try await Task.sleep(for: .milliseconds(300))  // the socket file exists just before it listens
        try await Task.sleep(for: .seconds(2))  // ~20 refused attempts at 20-100 ms backoff
        let down = try await uplink()
        #expect(down["connected"] as? Bool == false)
        #expect((down["last_error"] as? String)?.contains("Connection refused") == true, "\(down)")
        #expect(try await cli(["status"]).contains("last error: "), "the status text says why")
        let warnings = daemon.log().components(separatedBy: "cannot reach the MQTT broker").count - 1
        #expect(warnings == 1, "one warning for one reason, not one per attempt:\n\(daemon.log())")

        let broker = try await MosquittoBroker.start(in: dir, port: brokerPort)
        defer { broker.stop() }
        var events: [[String: Any]] = []
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline, !events.contains(where: { $0["kind"] as? String == "uplink_up" }) {
            try await Task.sleep(for: .milliseconds(200))
            let text = try await cli(["events", "--json", "--last", "20"])
            events = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]) ?? []
        }
        let kinds = events.compactMap { $0["kind"] as? String }.filter { $0.hasPrefix("uplink_") }
        #expect(kinds == ["uplink_down", "uplink_up"], "\(events)")
        let up = try #require(events.first { $0["kind"] as? String == "uplink_up" })
        #expect((up["message"] as? String)?.contains("failed attempt(s), last: ") == true, "\(up)")
        #expect(try await uplink()["last_error"] is NSNull)
    }

    /// Every reading the hub received, in arrival order: its sequence number and its content (without the number).
    func received(_ hub: MosquittoSubscriber) -> [(seq: Int, content: String)] {
        hub.messages().compactMap { ReadingsMessage($0.payload) }.flatMap { m in
            m.readings.compactMap { r -> (Int, String)? in
                guard let seq = r["seq"] as? Int else { return nil }
                var rest = r
                rest["seq"] = nil
                let content = (try? JSONSerialization.data(withJSONObject: rest, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? ""
                return (seq, content)
            }
        }
    }
}
