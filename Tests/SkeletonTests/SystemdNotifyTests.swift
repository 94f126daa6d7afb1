import Foundation
import Simulator
import Synchronization
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A fake systemd: a datagram socket the daemon gets as `$NOTIFY_SOCKET`, and what it receives.
final class FakeNotifySocket: Sendable {
    let path: String
    private let fd: Int32
    private let received = Mutex<[(time: ContinuousClock.Instant, message: String)]>([])

    init(_ dir: TemporaryDirectory) throws {
        path = dir.file("notify.sock")
        let sock = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        fd = sock
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in for (i, b) in Array(path.utf8).enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else { throw PeerError("bind \(path): \(errno)") }
        Thread { [self] in
            let fd = sock
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                let text = String(decoding: buffer[0..<n], as: UTF8.self)
                received.withLock { $0.append((.now, text)) }
            }
        }.start()
    }

    var messages: [(time: ContinuousClock.Instant, message: String)] { received.withLock { $0 } }
    func count(_ prefix: String) -> Int { messages.filter { $0.message.hasPrefix(prefix) || $0.message.contains("\n" + prefix) }.count }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

@Suite("systemd notify and watchdog", .serialized)
struct SystemdNotifyTests {
    func start(_ dir: TemporaryDirectory, notify: FakeNotifySocket, hangBus: Bool = false) async throws -> (daemon: PeerProcess, sim: PeerProcess) {
        let simPort = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(simPort)"], logDirectory: dir.path)
        try await sim.waitForPort(simPort)
        let config = DaemonConfig.header(mqttPort: try FreePort.allocate()) + """
            [metrics]
            textfile = "\(dir.file("kilntally.prom"))"
            interval = "1s"

            """ + BeltScaleSimulator.exampleDeviceConfig(port: simPort, pollInterval: "200ms")
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        var env = ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"]
        if hangBus { env["KILNTALLY_DEBUG_HANG_BUS"] = "sim" }
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", dir.file("state"),
                                                 "--socket", dir.file("k.sock")],
                                     environment: env, logDirectory: dir.path)
        return (daemon, sim)
    }

    @Test("READY after the barrier, WATCHDOG every half interval through a device outage (the outage shows in STATUS), STOPPING and exit 0 within the bound on SIGTERM")
    func lifecycle() async throws {
        let dir = try TemporaryDirectory()
        let notify = try FakeNotifySocket(dir)
        let (daemon, sim) = try await start(dir, notify: notify)
        defer { daemon.stop(); sim.stop() }
        try await daemon.waitUntil("READY=1", timeout: .seconds(20)) { notify.count("READY=1") == 1 }
        let ready = try #require(notify.messages.first { $0.message.contains("READY=1") })
        #expect(ready.message.contains("STATUS="))
        #expect(daemon.log().contains("ready:"))
        // Nothing before READY but nothing at all: WATCHDOG pings start after it.
        #expect(notify.messages.first?.message.contains("READY=1") == true)
        try await daemon.waitUntil("device answering in STATUS", timeout: .seconds(10)) {
            notify.messages.last?.message.contains("1/1 devices answering") == true
        }
        // Metrics: `kilntally metrics` and the textfile, both valid for Prometheus' own parser, with the device's polls.
        let metrics = try PeerProcess(name: "metrics", executable: try RepoPaths.builtProduct("kilntally"),
                                      arguments: ["metrics", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        #expect(try await metrics.waitForExit() == 0, "\(metrics.log())")
        try metrics.log().write(toFile: dir.file("cli.prom"), atomically: true, encoding: .utf8)
        try await daemon.waitUntil("the metrics textfile") { FileManager.default.fileExists(atPath: dir.file("kilntally.prom")) }
        for file in ["cli.prom", "kilntally.prom"] {
            let parsed = try await runTool(RepoPaths.venvPython, [RepoPaths.peerScript("prom_check.py"), dir.file(file)], in: dir, name: "prom-\(file)")
            #expect(parsed.contains(#"kilntally_device_up{bus="sim",device="belt1",node="kiln1",site="plant-a"} 1.0"#), "\(parsed)")
            #expect(parsed.contains("kilntally_device_polls_total{"), "\(parsed)")
            #expect(parsed.contains("kilntally_store_last_sequence{"))
        }
        // tail follows the stored readings.
        let tail = try PeerProcess(name: "tail", executable: try RepoPaths.builtProduct("kilntally"),
                                   arguments: ["tail", "--count", "5", "--device", "belt1", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        #expect(try await tail.waitForExit() == 0, "\(tail.log())")
        let tailLines = tail.log().split(separator: "\n")
        #expect(tailLines.count == 5 && tailLines.allSatisfy { $0.contains(" belt1/") && $0.hasSuffix(" good") }, "\(tail.log())")
        // probe on the daemon's own bus goes through the daemon, in turn with its polls.
        let probe = try PeerProcess(name: "probe", executable: try RepoPaths.builtProduct("kilntally"),
                                    arguments: ["probe", "--config", dir.file("kilntally.toml"), "--device", "belt1", "--address", "0",
                                                "--count", "4", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        #expect(try await probe.waitForExit() == 0, "\(probe.log())")
        #expect(probe.log().contains("(through kilntallyd)") && probe.log().contains("uint32"), "\(probe.log())")
        // The status protocol under random bytes: the daemon stays up and answers the next valid request.
        let socketPath = dir.file("k.sock")
        try await ControlSocketTests.offPool {
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<100 {
                let bytes = (0..<Int.random(in: 0...2_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } + [0x0A]
                _ = try ControlSocketTests.raw(socketPath, bytes)
            }
        }
        #expect(daemon.isRunning)
        let afterFuzz = try PeerProcess(name: "status-after-fuzz", executable: try RepoPaths.builtProduct("kilntally"),
                                        arguments: ["status", "--socket", socketPath], logDirectory: dir.path)
        #expect(try await afterFuzz.waitForExit() == 0, "\(afterFuzz.log())")
        // The plant goes away: the daemon is still alive, so the pings go on, and STATUS says what is wrong.
        sim.stop()
        try await daemon.waitUntil("the outage in STATUS", timeout: .seconds(15)) {
            notify.messages.last?.message.contains("0/1 devices answering") == true
        }
        let before = notify.count("WATCHDOG=1")
        try await Task.sleep(for: .seconds(3))
        #expect(notify.count("WATCHDOG=1") >= before + 4, "pings at half the 1 s interval continue through the outage")
        let stopAsked = ContinuousClock.now
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: .seconds(20)) == 0, "\(daemon.log())")
        let stopTook = ContinuousClock.now - stopAsked
        #expect(stopTook < .seconds(15), "stopped in \(stopTook): the unit's TimeoutStopSec is 20 s")
        #expect(notify.count("STOPPING=1") == 1)
    }

    @Test("a hung bus thread (debug fault hook) stops the WATCHDOG pings and says so in STATUS")
    func hungExecutorStopsPings() async throws {
        let dir = try TemporaryDirectory()
        let notify = try FakeNotifySocket(dir)
        let (daemon, sim) = try await start(dir, notify: notify, hangBus: true)
        defer { daemon.killHard(); sim.stop() }
        try await daemon.waitUntil("READY=1", timeout: .seconds(20)) { notify.count("READY=1") == 1 }
        try await daemon.waitUntil("NOT ALIVE in STATUS", timeout: .seconds(30)) {
            notify.messages.contains { $0.message.contains("NOT ALIVE: bus sim") }
        }
        let notAlive = try #require(notify.messages.first { $0.message.contains("NOT ALIVE") }?.time)
        try await Task.sleep(for: .seconds(2))
        #expect(!notify.messages.contains { $0.time > notAlive && $0.message.contains("WATCHDOG=1") }, "no ping after the thread hung")
        #expect(daemon.log().contains("not alive, watchdog pings stopped"))
        #expect(notify.count("WATCHDOG=1") > 0, "pings went out before the hang")
    }

    func configHash(_ dir: TemporaryDirectory) async throws -> String? {
        let p = try PeerProcess(name: "status-\(UInt32.random(in: 0...UInt32.max))", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: ["status", "--json", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        guard try await p.waitForExit() == 0 else { return nil }
        let o = try JSONSerialization.jsonObject(with: Data(p.log().utf8)) as? [String: Any]
        return (o?["node"] as? [String: Any])?["config_hash"] as? String
    }

    @Test("SIGHUP with a valid config: RELOADING then READY, the changed bus restarted, the new hash in force; with an invalid one: refused, logged, the old one keeps running")
    func reload() async throws {
        let dir = try TemporaryDirectory()
        let notify = try FakeNotifySocket(dir)
        let (daemon, sim) = try await start(dir, notify: notify)
        defer { daemon.stop(); sim.stop() }
        try await daemon.waitUntil("READY=1", timeout: .seconds(20)) { notify.count("READY=1") == 1 }
        try await daemon.waitUntil("the control socket") { FileManager.default.fileExists(atPath: dir.file("k.sock")) }
        let first = try #require(try await configHash(dir))
        // A valid edit: the device is polled twice as often.
        let path = dir.file("kilntally.toml")
        let original = try String(contentsOfFile: path, encoding: .utf8)
        try original.replacingOccurrences(of: #"poll_interval = "200ms""#, with: #"poll_interval = "100ms""#)
            .write(toFile: path, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await daemon.waitUntil("the reload applied", timeout: .seconds(15)) { notify.count("READY=1") == 2 }
        #expect(notify.count("RELOADING=1") == 1)
        let reloading = try #require(notify.messages.first { $0.message.contains("RELOADING=1") })
        #expect(reloading.message.contains("MONOTONIC_USEC="))
        #expect(daemon.log().contains("buses restarted: sim"), "\(daemon.log())")
        let second = try #require(try await configHash(dir))
        #expect(second != first)
        // An invalid edit: refused with the error, the running configuration stays, polling goes on.
        try (original + "\n[mqtt.nonsense]\nkey = 1\n").write(toFile: path, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await daemon.waitUntil("the reload refused", timeout: .seconds(15)) { notify.count("READY=1") == 3 }
        #expect(daemon.log().contains("reload refused"), "\(daemon.log())")
        #expect(daemon.log().contains("nonsense"))
        #expect(try await configHash(dir) == second)
        #expect(daemon.isRunning)
        try await daemon.waitUntil("still polling", timeout: .seconds(10)) {
            notify.messages.last?.message.contains("1/1 devices answering") == true
        }
    }

    @Test("under systemd (JOURNAL_STREAM is stderr) log lines carry their syslog priority and no timestamp; elsewhere a timestamp and the level")
    func journalFriendlyLogs() async throws {
        let dir = try TemporaryDirectory()
        let config = DaemonConfig.header(mqttPort: try FreePort.allocate()) + """
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(try FreePort.allocate())
            [[device]]
            name = "belt"
            bus = "plc"
              [[device.channel]]
              name = "rate"
              table = "holding"
              address = 0
              type = "uint16"
              unit = "t/h"
            """
        try config.write(toFile: dir.file("k.toml"), atomically: true, encoding: .utf8)
        let daemon = try RepoPaths.builtProduct("kilntallyd")
        func run(journal: Bool) async throws -> String {
            let log = dir.file(journal ? "journal.log" : "plain.log")
            // stderr goes to a file; JOURNAL_STREAM names that very file, as systemd names its journal stream.
            let script = ": > '\(log)'; "
                + (journal ? "export JOURNAL_STREAM=$(stat -c %d:%i '\(log)'); " : "unset JOURNAL_STREAM; ")
                + "exec '\(daemon)' --config '\(dir.file("k.toml"))' --state-dir '\(dir.file(journal ? "s1" : "s2"))' --socket '\(dir.file(journal ? "a.sock" : "b.sock"))' 2>>'\(log)'"
            let p = try PeerProcess(name: journal ? "journal" : "plain", executable: "/bin/sh", arguments: ["-c", script], logDirectory: dir.path)
            try await p.waitUntil("the device error logged", timeout: .seconds(15)) {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("is not answering")
            }
            p.signal(SIGTERM)
            _ = try await p.waitForExit()
            return try String(contentsOfFile: log, encoding: .utf8)
        }
        let journal = try await run(journal: true)
        let lines = journal.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("<") }, "\(journal)")
        #expect(lines.contains { $0.hasPrefix("<6>kilntallyd 0.1.0 starting") || $0.hasPrefix("<6>kilntallyd") })
        let deviceError = try #require(lines.first { $0.contains("is not answering") })
        #expect(deviceError.hasPrefix("<3>") && deviceError.contains("device=belt") && deviceError.contains("bus=plc") && deviceError.contains("call="),
                "\(deviceError)")
        #expect(!journal.contains("T0") || !lines.contains { $0.dropFirst(3).prefix(4).allSatisfy(\.isNumber) }, "no timestamps in the journal form")
        let plain = try await run(journal: false)
        let first = try #require(plain.split(separator: "\n").first)
        #expect(first.prefix(4).allSatisfy(\.isNumber) && first.contains(" info "), "\(first)")
    }

    @Test("READY does not count a device as answering before it has answered: a silent device is 'not polled yet', then not answering")
    func readyCountsOnlyAnsweredDevices() async throws {
        let dir = try TemporaryDirectory()
        let notify = try FakeNotifySocket(dir)
        // pymodbus serves unit 1; the device asks as unit 7, which it never answers (the client times out).
        let slave = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 4, holding: [5]), unit: 1,
                                                      faults: [7: .silent])
        defer { slave.process.stop() }
        let config = DaemonConfig.header(mqttPort: try FreePort.allocate()) + """
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(slave.port)
            response_timeout = "1500ms"

            [[device]]
            name = "silent"
            bus = "plc"
            unit_id = 7
            poll_interval = "1s"
              [[device.channel]]
              name = "rate"
              table = "holding"
              address = 0
              type = "uint16"

            """
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", dir.file("state"),
                                                 "--socket", dir.file("k.sock")],
                                     environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"], logDirectory: dir.path)
        defer { daemon.stop() }
        try await daemon.waitUntil("READY=1", timeout: .seconds(20)) { notify.count("READY=1") == 1 }
        let ready = try #require(notify.messages.first { $0.message.contains("READY=1") }).message
        #expect(ready.contains("0/1 devices answering (1 not polled yet)"), "\(ready)")
        try await daemon.waitUntil("the first poll timed out", timeout: .seconds(10)) {
            notify.messages.last?.message.contains("STATUS=0/1 devices answering, ") == true
        }
        #expect(!notify.messages.contains { $0.message.contains("1/1 devices answering") }, "\(notify.messages.map(\.message))")
    }
}
