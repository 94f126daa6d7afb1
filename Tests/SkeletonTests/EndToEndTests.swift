import Foundation
import Simulator
import TestSupport
import Testing

/// One readings message as a hub subscriber receives it.
struct ReadingsMessage {
    var firstSeq: Int
    var lastSeq: Int
    var readings: [[String: Any]]

    init?(_ payload: String) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any],
              obj["schema"] as? String == "kilntally.readings/1",
              let f = obj["first_seq"] as? Int, let l = obj["last_seq"] as? Int,
              let r = obj["readings"] as? [[String: Any]] else { return nil }
        firstSeq = f
        lastSeq = l
        readings = r
    }
}

func json(_ payload: String) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any]
}

/// Runs the built products as real processes against real peers.
@Suite("Walking skeleton end to end", .serialized)
struct EndToEndTests {
    func daemonConfig(brokerPort: Int, simulatorPort: Int, site: String = "plant-a", node: String = "kiln1") -> String {
        DaemonConfig.header(site: site, node: node, mqttPort: brokerPort, keepAlive: "5s", reconnect: ("50ms", "500ms"),
                            batchInterval: "200ms")
            + "[log]\nlevel = \"debug\"\n\n"
            + BeltScaleSimulator.exampleDeviceConfig(port: simulatorPort, pollInterval: "200ms")
    }

    struct Rig {
        let dir: TemporaryDirectory
        let broker: MosquittoBroker
        var simulator: PeerProcess
        let simulatorPort: Int
        let subscriber: MosquittoSubscriber
        let configPath: String
        let stateDir: String

        func startDaemon(_ name: String = "kilntallyd") throws -> PeerProcess {
            try PeerProcess(name: name, executable: try RepoPaths.builtProduct("kilntallyd"),
                            arguments: ["--config", configPath, "--state-dir", stateDir], logDirectory: dir.path)
        }

        func readingsMessages() -> [ReadingsMessage] {
            subscriber.messages().filter { $0.topic == "kilntally/plant-a/kiln1/readings" }.compactMap { ReadingsMessage($0.payload) }
        }

        func statusMessages() -> [(retained: Bool, state: String, reason: String?)] {
            subscriber.messages().filter { $0.topic == "kilntally/plant-a/kiln1/status" }.compactMap {
                guard let o = json($0.payload), let s = o["state"] as? String else { return nil }
                return ($0.retained, s, o["reason"] as? String)
            }
        }
    }

    func makeRig() async throws -> Rig {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        let simPort = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(simPort)"], logDirectory: dir.path)
        try await sim.waitForPort(simPort)
        let sub = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kilntally/#")
        try await sub.waitUntilSubscribed(broker: broker, topic: "kilntally/#")
        let configPath = dir.file("kilntally.toml")
        try daemonConfig(brokerPort: broker.port, simulatorPort: simPort).write(toFile: configPath, atomically: true, encoding: .utf8)
        return Rig(dir: dir, broker: broker, simulator: sim, simulatorPort: simPort, subscriber: sub,
                   configPath: configPath, stateDir: dir.file("state"))
    }

    @Test("simulator → daemon → broker → subscriber: readings arrive, decoded right, status online then offline")
    func readingsFlowEndToEnd() async throws {
        let rig = try await makeRig()
        let daemon = try rig.startDaemon()
        try await daemon.waitUntil("two readings batches at the subscriber", timeout: .seconds(30)) {
            rig.readingsMessages().count >= 2
        }
        let batches = rig.readingsMessages()
        let readings = batches.flatMap(\.readings)
        // Every channel of the simulated belt scale is there, with good quality and its unit.
        let channels = Set(readings.compactMap { $0["channel"] as? String })
        #expect(channels == ["rate", "total1", "speed", "rate_f32", "total_kg_cdab", "running"])
        #expect(readings.allSatisfy { $0["quality"] as? String == "good" && $0["device"] as? String == "belt1" })
        #expect(readings.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true })
        // The same totalizer read as uint32 ABCD (holding) and uint32 CDAB (input) decodes to the same kilograms,
        // and float32 rate matches the exact rate: word orders are handled end to end.
        for poll in Dictionary(grouping: readings, by: { ($0["seq"] as! Int - 1) / 6 }).values {
            let byChannel = Dictionary(uniqueKeysWithValues: poll.map { ($0["channel"] as! String, $0) })
            if let a = byChannel["total1"]?["value"] as? Int, let b = byChannel["total_kg_cdab"]?["value"] as? Int {
                #expect(abs(a - b) <= 200, "ABCD \(a) vs CDAB \(b) (read ~ms apart while the belt runs)")
                #expect(a >= 1_234_567)
            }
            if let r = byChannel["rate"]?["value"] as? Double, let f = byChannel["rate_f32"]?["value"] as? Double {
                #expect(abs(r - f) < 1.0)
                #expect(r > 20 && r < 40)
            }
        }
        // Sequence numbers are contiguous across batches: nothing lost, nothing twice.
        let seqs = readings.compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(seqs.first!...seqs.last!))
        #expect(batches.allSatisfy { $0.readings.first?["seq"] as? Int == $0.firstSeq && $0.readings.last?["seq"] as? Int == $0.lastSeq })
        // Birth message retained or live: online.
        #expect(rig.statusMessages().contains { $0.state == "online" })

        daemon.signal(SIGTERM)
        let status = try await daemon.waitForExit(timeout: .seconds(15))
        #expect(status == 0, "daemon log:\n\(daemon.log())")
        _ = try await rig.subscriber.waitForMessages(count: 1, timeout: .seconds(10)) {
            $0.topic.hasSuffix("/status") && json($0.payload)?["state"] as? String == "offline"
        }
        #expect(rig.statusMessages().last?.reason == "shutdown")
    }

    @Test("restart resumes from the acknowledged cursor: no gap and no duplicate sequence numbers")
    func restartResumesWithoutGaps() async throws {
        let rig = try await makeRig()
        var daemon = try rig.startDaemon("kilntallyd-1")
        try await daemon.waitUntil("readings", timeout: .seconds(30)) { rig.readingsMessages().count >= 2 }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        let before = rig.readingsMessages().map(\.lastSeq).max()!

        daemon = try rig.startDaemon("kilntallyd-2")
        try await daemon.waitUntil("readings after restart", timeout: .seconds(30)) {
            rig.readingsMessages().contains { $0.firstSeq > before }
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        let seqs = rig.readingsMessages().flatMap(\.readings).compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(1...seqs.max()!), "every stored reading published exactly once across the restart")
    }

    @Test("a device outage is reported and survived; the will says offline when the daemon is killed")
    func deviceOutageAndWill() async throws {
        var rig = try await makeRig()
        let daemon = try rig.startDaemon()
        try await daemon.waitUntil("first readings", timeout: .seconds(30)) { !rig.readingsMessages().isEmpty }

        // Pull the plug on the device: the daemon keeps running and says which device, bus and call failed.
        rig.simulator.stop()
        try await daemon.waitUntil("comm_failure readings", timeout: .seconds(30)) {
            rig.readingsMessages().flatMap(\.readings).contains { $0["quality"] as? String == "comm_failure" }
        }
        #expect(daemon.isRunning)
        try await daemon.waitUntil("a log line naming device, bus and call") {
            daemon.log().contains("device belt1 on bus sim (127.0.0.1:\(rig.simulatorPort)) is not answering") && daemon.log().contains("modbus_")
        }

        // The device comes back on the same port: good readings again.
        let failuresSeen = rig.readingsMessages().flatMap(\.readings).count
        rig.simulator = try PeerProcess(name: "simulator-2", executable: try RepoPaths.builtProduct("kilntally"),
                                        arguments: ["simulate", "--listen", "127.0.0.1:\(rig.simulatorPort)"], logDirectory: rig.dir.path)
        try await rig.simulator.waitForPort(rig.simulatorPort)
        try await daemon.waitUntil("good readings after the device returned", timeout: .seconds(30)) {
            rig.readingsMessages().flatMap(\.readings).dropFirst(failuresSeen).contains { $0["quality"] as? String == "good" }
        }

        // kill -9: no clean disconnect, so the broker publishes the retained will.
        daemon.killHard()
        let will = try await rig.subscriber.waitForMessages(count: 1, timeout: .seconds(15)) {
            $0.topic.hasSuffix("/status") && json($0.payload)?["state"] as? String == "offline"
        }
        #expect(json(will[0].payload)?["reason"] as? String == "connection lost")
    }
}

@Suite("Configuration errors at the command line", .serialized)
struct ConfigCommandTests {
    func run(_ product: String, _ args: [String], in dir: TemporaryDirectory,
             environment: [String: String]? = nil) async throws -> (Int32, String) {
        let p = try PeerProcess(name: "\(product)-\(UUID().uuidString.prefix(6))", executable: try RepoPaths.builtProduct(product),
                                arguments: args, environment: environment, logDirectory: dir.path)
        let status = try await p.waitForExit(timeout: .seconds(20))
        return (status, p.log())
    }

    @Test func configCheckPrintsFileLineAndKeyPathAndExits78() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("bad.toml")
        try """
            [node]
            site = "plant-a"
            name = "kiln1"

            [mqtt]
            host = "127.0.0.1"

            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "10.0.0.5"

            [[device]]
            name = "belt1"
            bus = "plc"
              [[device.channel]]
              name = "rate"
              table = "holding"
              address = 1009
              type = "floot32"
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let (status, output) = try await run("kilntally", ["config", "check", "--config", path], in: dir)
        #expect(status == 78)
        #expect(output.contains("\(path):20: device[0].channel[0].type"), "output:\n\(output)")
        #expect(output.contains("floot32"))

        let (dstatus, doutput) = try await run("kilntallyd", ["--config", path, "--state-dir", dir.file("state")], in: dir)
        #expect(dstatus == 78)
        #expect(doutput.contains("device[0].channel[0].type"))
    }

    @Test func configCheckAcceptsTheSimulatorExample() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("good.toml")
        try (DaemonConfig.header(site: "a", node: "b", mqttHost: "localhost") + BeltScaleSimulator.exampleDeviceConfig(port: 1502))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (status, output) = try await run("kilntally", ["config", "check", "--config", path], in: dir)
        #expect(status == 0, "output:\n\(output)")
        #expect(output.contains("ok"))
    }

    @Test func planShowsMergedRequests() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("plan.toml")
        try (DaemonConfig.header(site: "a", node: "b", mqttHost: "localhost") + BeltScaleSimulator.exampleDeviceConfig(port: 1502))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (status, output) = try await run("kilntally", ["plan", "--config", path], in: dir)
        #expect(status == 0, "output:\n\(output)")
        #expect(output.contains("holding  address 1009   count 8    -> rate, speed, total1"), "output:\n\(output)")
        #expect(output.contains("3 request(s) per poll cycle for 6 channel(s)"))
    }

    @Test("time zones come from the system's tzdata: a misspelt zone and a missing database are config errors")
    func timeZonesFromTzdata() async throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("zone.toml")
        let base = "[node]\nsite = \"a\"\nname = \"b\"\n[mqtt]\nhost = \"localhost\"\n" + BeltScaleSimulator.exampleDeviceConfig(port: 1502)
        try (base + "\n[shifts]\ntime_zone = \"Europe/Berlln\"\n[[shifts.shift]]\nname = \"D\"\nstart = \"06:00\"\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (status, output) = try await run("kilntally", ["config", "check", "--config", path], in: dir)
        #expect(status == 78)
        #expect(output.contains("shifts.time_zone"), "output:\n\(output)")
        #expect(output.contains("did you mean \"Europe/Berlin\"?"), "output:\n\(output)")

        // Without tzdata (here: TZDIR names an empty directory) even the default calendar, Asia/Shanghai, is refused
        // with a message that says where it looked, not a crash.
        try base.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir.file("no-zones"), withIntermediateDirectories: true)
        let (bare, bareOutput) = try await run("kilntally", ["config", "check", "--config", path], in: dir,
                                               environment: ["TZDIR": dir.file("no-zones")])
        #expect(bare == 78)
        #expect(bareOutput.contains("not in \(dir.file("no-zones")) (is the tzdata package installed?)"), "output:\n\(bareOutput)")
        let (daemon, daemonOutput) = try await run("kilntallyd", ["--config", path, "--state-dir", dir.file("state")], in: dir,
                                                   environment: ["TZDIR": dir.file("no-zones")])
        #expect(daemon == 78, "output:\n\(daemonOutput)")
        #expect(daemonOutput.contains("tzdata"))
    }

    @Test func missingConfigFileIsAConfigError() async throws {
        let dir = try TemporaryDirectory()
        let (status, output) = try await run("kilntally", ["config", "check", "--config", dir.file("nope.toml")], in: dir)
        #expect(status == 78)
        #expect(output.contains("nope.toml"))
    }
}

@Suite("Read-only towards plant devices")
struct ReadOnlyTests {
    static let forbidden = [
        "modbus_write_bit", "modbus_write_register", "modbus_write_bits", "modbus_write_registers",
        "modbus_mask_write_register", "modbus_write_and_read_registers", "modbus_send_raw_request",
        "modbus_send_raw_request_tid", "modbus_report_slave_id",
    ]

    @Test("no Modbus write or raw-request function is imported by either binary", arguments: ["kilntally", "kilntallyd"])
    func noWriteSymbols(product: String) async throws {
        let binary = try RepoPaths.builtProduct(product)
        let dir = try TemporaryDirectory()
        let nm = try PeerProcess(name: "nm-\(product)", executable: "/usr/bin/nm", arguments: ["-D", "--undefined-only", binary],
                                 logDirectory: dir.path)
        #expect(try await nm.waitForExit() == 0)
        let symbols = Set(nm.log().split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
            .map { $0.split(separator: "@").first.map(String.init) ?? $0 })
        // The check can fail: the binary really imports libmodbus' read functions.
        #expect(symbols.contains("modbus_read_registers"), "nm output did not list libmodbus imports:\n\(nm.log().prefix(2000))")
        #expect(symbols.contains("modbus_read_input_registers"))
        let found = Self.forbidden.filter { symbols.contains($0) } + symbols.filter { $0.hasPrefix("modbus_write") }
        #expect(found.isEmpty, "\(product) imports Modbus write functions: \(found)")
    }
}

@Suite("README run command")
struct DemoCommandTests {
    @Test("deploy/demo.sh --duration shows readings from the simulator at the hub subscriber")
    func demoShowsReadings() async throws {
        let dir = try TemporaryDirectory()
        let binDir = URL(fileURLWithPath: try RepoPaths.builtProduct("kilntallyd")).deletingLastPathComponent().path
        // The test runner already holds SwiftPM's build lock, so the demo uses the binaries this test run built.
        let demo = try PeerProcess(name: "demo", executable: RepoPaths.root.appendingPathComponent("deploy/demo.sh").path,
                                   arguments: ["--duration", "6"], environment: ["KILNTALLY_BIN_DIR": binDir],
                                   logDirectory: dir.path, workingDirectory: RepoPaths.root.path)
        let status = try await demo.waitForExit(timeout: .seconds(90))
        let out = demo.log()
        #expect(status == 0, "demo output:\n\(out)")
        let lines = out.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("kilntally/demo-plant/kiln1-edge/readings {") && $0.contains("\"device\":\"belt1\"") },
                "demo output:\n\(out)")
        #expect(lines.contains { $0.hasPrefix("kilntally/demo-plant/kiln1-edge/status {") && $0.contains("\"state\":\"online\"") })
        #expect(lines.contains { $0.hasPrefix("kilntally/demo-plant/kiln1-edge/status {") && $0.contains("\"state\":\"offline\"") })
    }
}
