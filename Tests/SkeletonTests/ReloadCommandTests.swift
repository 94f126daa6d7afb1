import Foundation
import KilnTallyCore
import TestSupport
import Testing

/// `kilntally reload` against a running kilntallyd that polls a pymodbus slave and publishes to mosquitto: the
/// reply says what the reload did, and it did it; an invalid file is refused with its errors and changes nothing.
@Suite("kilntally reload", .serialized)
struct ReloadCommandTests {
    struct Rig {
        let dir: TemporaryDirectory
        let broker: MosquittoBroker
        let slave: PymodbusServer
        let daemon: PeerProcess
        var configPath: String { dir.file("kilntally.toml") }
        var socket: String { dir.file("k.sock") }

        func stop() {
            daemon.stop()
            slave.stop()
            broker.stop()
        }

        /// Runs `kilntally ARGS --socket SOCKET` to completion: (exit status, output).
        func cli(_ args: [String]) async throws -> (status: Int32, output: String) {
            let p = try PeerProcess(name: "kilntally-\(args[0])-\(UInt32.random(in: 0...UInt32.max))",
                                    executable: try RepoPaths.builtProduct("kilntally"),
                                    arguments: args + ["--socket", socket], logDirectory: dir.path)
            return (try await p.waitForExit(), p.log())
        }

        /// `kilntally status --json`.
        func status() async throws -> [String: Any] {
            let (status, output) = try await cli(["status", "--json"])
            try #require(status == 0, "\(output)")
            return try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        }

        /// Polls `kilntally ARGS` every 200 ms until `condition` holds for its output (or fails after `timeout`).
        func waitForCLI(_ what: String, _ args: [String], timeout: Duration = .seconds(20),
                        _ condition: (Int32, String) -> Bool) async throws {
            let deadline = ContinuousClock.now + timeout
            var last = ""
            while ContinuousClock.now < deadline {
                let (status, output) = try await cli(args)
                if condition(status, output) { return }
                last = output
                try #require(daemon.isRunning, "kilntallyd exited:\n\(daemon.log())")
                try await Task.sleep(for: .milliseconds(200))
            }
            Issue.record("timed out waiting for \(what); last output:\n\(last)\n\(daemon.log())")
            throw PeerError("timed out waiting for \(what)")
        }
    }

    /// Shifts of 10 s anchored on a whole minute, closing 1 s after their end; one Modbus TCP bus with the belt
    /// (unit 1) feeding stream msw. `changed` adds the feeder (unit 2, same bus) and its stream rdf, and doubles the
    /// store's bound (read only at start).
    static func config(slavePort: Int, brokerPort: Int, anchor: UTCInstant, changed: Bool) -> String {
        func device(_ name: String, unit: Int, address: Int) -> String {
            """
            [[device]]
            name = "\(name)"
            bus = "plc"
            unit_id = \(unit)
            poll_interval = "200ms"
              [[device.channel]]
              name = "rate"
              table = "holding"
              address = \(address)
              type = "uint16"
              unit = "t/h"
              role = "rate"

            """
        }
        func stream(_ name: String, device: String, feedPoint: String) -> String {
            """
            [[stream]]
            name = "\(name)"
            material = "\(name)"
            feed_point = "\(feedPoint)"
            device = "\(device)"
            rate = "rate"

            """
        }
        return DaemonConfig.header(node: changed ? "kiln2" : "kiln1", mqttPort: brokerPort, reconnect: ("50ms", "300ms"),
                                   storeMaxBytes: changed ? "16MiB" : "8MiB", profileDirs: [])
            + DaemonConfig.shortShifts(anchor: anchor)
            + """
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(slavePort)
            response_timeout = "500ms"

            """
            + device("belt", unit: 1, address: 0) + (changed ? device("feeder", unit: 2, address: 1) : "")
            + stream("msw", device: "belt", feedPoint: "calciner") + (changed ? stream("rdf", device: "feeder", feedPoint: "main_burner") : "")
    }

    /// mosquitto, pymodbus serving units 1 and 2 (30 and 12 t/h), and kilntallyd on `config`, answering `status`
    /// with its belt polled and connected to the broker.
    static func start(config: (_ slavePort: Int, _ brokerPort: Int) -> String) async throws -> Rig {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        let slave = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 8, holding: [30, 12]), unit: 1, moreUnits: [2])
        try config(slave.port, broker.port).write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", dir.file("state"),
                                                 "--socket", dir.file("k.sock")],
                                     logDirectory: dir.path)
        let rig = Rig(dir: dir, broker: broker, slave: slave, daemon: daemon)
        do {
            try await daemon.waitUntil("the control socket") { FileManager.default.fileExists(atPath: rig.socket) }
            try await rig.waitForCLI("the belt polled", ["status", "--json"]) { status, output in
                status == 0 && devices(output).contains { $0["device"] as? String == "belt" && ($0["polls"] as? Int ?? 0) > 0 }
            }
            try await daemon.waitUntil("the MQTT connection") { broker.process.log().contains(" as kilntally-plant-a-kiln1") }
        } catch {
            rig.stop()
            throw error
        }
        return rig
    }

    static func node(_ status: [String: Any]) -> [String: Any] { status["node"] as? [String: Any] ?? [:] }

    static func devices(_ status: [String: Any]) -> [[String: Any]] {
        (status["buses"] as? [[String: Any]] ?? []).flatMap { $0["devices"] as? [[String: Any]] ?? [] }
    }

    /// The devices in `kilntally status --json` output (none if it is not JSON).
    static func devices(_ output: String) -> [[String: Any]] {
        devices((try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]) ?? [:])
    }

    @Test("a valid change: the reply names the restarted bus, what waits for a restart and the shift boundary; the new device is polled, the tally's new stream reports from that boundary, the MQTT session stays")
    func appliesAChange() async throws {
        let anchor = DaemonConfig.recentAnchor()
        let rig = try await Self.start { Self.config(slavePort: $0, brokerPort: $1, anchor: anchor, changed: false) }
        defer { rig.stop() }
        let before = try await rig.status()
        let oldHash = try #require(Self.node(before)["config_hash"] as? String)
        let slavePort = rig.slave.port, brokerPort = rig.broker.port
        try Self.config(slavePort: slavePort, brokerPort: brokerPort, anchor: anchor, changed: true)
            .write(toFile: rig.configPath, atomically: true, encoding: .utf8)

        let asked = Date()
        let (status, output) = try await rig.cli(["reload", "--json"])
        #expect(status == 0, "\(output)\n\(rig.daemon.log())")
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(output)")
        #expect(reply["outcome"] as? String == "applied")
        #expect(reply["config_file"] as? String == rig.configPath)
        #expect(reply["previous_config_hash"] as? String == oldHash)
        let newHash = try #require(reply["config_hash"] as? String)
        #expect(newHash != oldHash)
        #expect(reply["buses_restarted"] as? [String] == ["plc"])
        #expect(reply["buses_started"] as? [String] == [] && reply["buses_stopped"] as? [String] == [])
        #expect((reply["buses_failed"] as? [Any])?.isEmpty == true)
        #expect(reply["restart_only"] as? [String] == ["[node]", "[store]"])
        #expect((reply["errors"] as? [Any])?.isEmpty == true)
        let tally = try #require(reply["tally"] as? [String: Any], "\(reply)")
        #expect(tally["state"] as? String == "staged", "\(tally)")
        #expect(tally["accounting_changed"] as? Bool == true)
        // The boundary after the shift in progress: a whole 10 s from the anchor, within one shift of the request.
        let effectiveText = try #require(tally["effective_utc"] as? String)
        let rfc3339 = ISO8601DateFormatter()
        rfc3339.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let effective = try #require(rfc3339.date(from: effectiveText), "\(effectiveText)")
        #expect(Int(effective.timeIntervalSince1970) % 10 == 0, "\(effectiveText)")
        #expect(effective > asked.addingTimeInterval(-1) && effective <= asked.addingTimeInterval(11), "\(effectiveText) for a request at \(asked)")
        #expect(tally["first_shift"] is String && tally["effective"] is String)

        // In force: the new hash, the feeder polled on the restarted bus; the store's bound waits for a restart.
        try await rig.waitForCLI("the feeder polled", ["status", "--json"]) { status, output in
            status == 0 && Self.devices(output).contains { $0["device"] as? String == "feeder" && $0["state"] as? String == "up" && ($0["polls"] as? Int ?? 0) > 0 }
        }
        let after = try await rig.status()
        #expect(Self.node(after)["config_hash"] as? String == newHash)
        #expect(Self.devices(after).compactMap { $0["device"] as? String } == ["belt", "feeder"])
        #expect((after["store"] as? [String: Any])?["max_bytes"] as? Int == 8 << 20)
        // The renamed node waits for the restart too: status, records and topics keep the running identity.
        #expect(Self.node(after)["node"] as? String == "kiln1")
        // The tally: the first report under the new setup is the shift the reply named, with both streams; the one
        // before it has only msw under the old configuration.
        var reports: [[String: Any]] = []
        try await rig.waitForCLI("a report under the new configuration", ["shifts", "--json", "--last", "20"], timeout: .seconds(40)) { status, output in
            reports = (try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]) ?? []
            return status == 0 && reports.contains { $0["config_hash"] as? String == newHash }
        }
        let first = try #require(reports.first { $0["config_hash"] as? String == newHash })
        #expect(first["shift"] as? String == tally["first_shift"] as? String, "\(first)")
        #expect(first["start_utc"] as? String == effectiveText)
        #expect((first["streams"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted() == ["msw", "rdf"])
        #expect(first["node"] as? String == "kiln1", "\(first)")
        let previous = try #require(reports.last { $0["end_utc"] as? String == effectiveText }, "\(reports)")
        #expect(previous["config_hash"] as? String == oldHash)
        #expect((previous["streams"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["msw"])
        // One MQTT session throughout: the reload did not reconnect.
        #expect(rig.broker.process.log().components(separatedBy: " as kilntally-plant-a-kiln1").count == 2, "\(rig.broker.process.log())")
    }

    @Test("an invalid file is refused with file, line and key of every error and exit 78; the daemon keeps the old configuration; an unchanged file and an unreachable daemon")
    func refusesAnInvalidFile() async throws {
        let anchor = DaemonConfig.recentAnchor()
        let rig = try await Self.start { Self.config(slavePort: $0, brokerPort: $1, anchor: anchor, changed: false) }
        defer { rig.stop() }
        let oldHash = try #require(Self.node(try await rig.status())["config_hash"] as? String)
        let good = try String(contentsOfFile: rig.configPath, encoding: .utf8)
        // Two mistakes: a misspelt type and a keep-alive below libmosquitto's minimum.
        let bad = good.replacingOccurrences(of: #"type = "uint16""#, with: #"type = "unit16""#)
            .replacingOccurrences(of: #"reconnect_min = "50ms""#, with: "reconnect_min = \"50ms\"\nkeep_alive = \"1s\"")
        try bad.write(toFile: rig.configPath, atomically: true, encoding: .utf8)
        let lines = bad.components(separatedBy: "\n")
        let typeLine = try #require(lines.firstIndex { $0.contains(#""unit16""#) }) + 1
        let keepAliveLine = try #require(lines.firstIndex { $0.hasPrefix("keep_alive") }) + 1

        let (status, output) = try await rig.cli(["reload"])
        #expect(status == 78, "\(output)")
        #expect(output.contains("\(rig.configPath):\(typeLine): device[0].channel[0].type: "), "\(output)")
        #expect(output.contains("\(rig.configPath):\(keepAliveLine): mqtt.keep_alive: "), "\(output)")
        #expect(output.contains("refused, \(rig.configPath) has 2 error(s); the running configuration \(oldHash) stays"), "\(output)")
        // --json: the same errors, structured, and the same exit status.
        let (jsonStatus, json) = try await rig.cli(["reload", "--json"])
        #expect(jsonStatus == 78)
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(json)")
        #expect(reply["outcome"] as? String == "refused" && reply["config_hash"] as? String == oldHash)
        let errors = reply["errors"] as? [[String: Any]] ?? []
        #expect(errors.map { "\($0["file"] ?? ""):\($0["line"] ?? ""):\($0["key"] ?? "")" }
                    == ["\(rig.configPath):\(keepAliveLine):mqtt.keep_alive", "\(rig.configPath):\(typeLine):device[0].channel[0].type"],
                "\(errors)")

        // Still answering, with the old configuration, and still polling.
        let status1 = try await rig.status()
        #expect(Self.node(status1)["config_hash"] as? String == oldHash)
        #expect(Self.devices(status1).compactMap { $0["device"] as? String } == ["belt"])
        let polls = Self.devices(status1).first?["polls"] as? Int ?? 0
        try await rig.waitForCLI("polls going on", ["status", "--json"]) { status, output in
            status == 0 && (Self.devices(output).first?["polls"] as? Int ?? 0) > polls
        }
        #expect(rig.daemon.isRunning)

        // The file put back as it was: nothing to do.
        try good.write(toFile: rig.configPath, atomically: true, encoding: .utf8)
        let (unchangedStatus, unchanged) = try await rig.cli(["reload"])
        #expect(unchangedStatus == 0, "\(unchanged)")
        #expect(unchanged.contains("unchanged, configuration \(oldHash) stays in force"), "\(unchanged)")

        // No daemon at the socket: 69.
        let gone = try PeerProcess(name: "kilntally-reload-gone", executable: try RepoPaths.builtProduct("kilntally"),
                                   arguments: ["reload", "--socket", rig.dir.file("nobody.sock")], logDirectory: rig.dir.path)
        #expect(try await gone.waitForExit() == 69, "\(gone.log())")
    }
}
