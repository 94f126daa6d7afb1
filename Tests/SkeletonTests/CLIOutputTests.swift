import Foundation
import KilnTallyDaemon
import TestSupport
import Testing

/// What the commands print for a person at a terminal: help texts, usage errors, the status table, messages that
/// name a bus, `tail` into a pipe.
@Suite("CLI output", .serialized)
struct CLIOutputTests {
    /// Runs a built product to completion: (exit status, stdout and stderr).
    static func run(_ product: String, _ arguments: [String], in dir: TemporaryDirectory) async throws -> (status: Int32, output: String) {
        let p = try PeerProcess(name: "\(product)-\(UInt32.random(in: 0...UInt32.max))", executable: try RepoPaths.builtProduct(product),
                                arguments: arguments, logDirectory: dir.path)
        return (try await p.waitForExit(), p.log())
    }

    /// The runs of three or more spaces inside the text of a help line: not its indentation, and not the gap before
    /// the description column (26) that the argument parser pads option and subcommand names to.
    static func strayRuns(_ line: String) -> Bool {
        let chars = Array(line)
        var parts = [line]
        if chars.count > 26, line.hasPrefix("  "), chars[25] == " ", chars[26] != " " {
            // The name column, without the padding that ends it, and the description.
            var name = String(chars[..<26])
            while name.last == " " { name.removeLast() }
            parts = [name, String(chars[26...])]
        }
        return parts.contains { part in
            part.drop { $0 == " " }.contains("   ")
        }
    }

    /// The subcommands a help text lists (SUBCOMMANDS: section, names at an indent of two).
    static func subcommands(_ help: String) -> [String] {
        guard let section = help.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first else { return [] }
        return section.split(separator: "\n", omittingEmptySubsequences: false)
            .prefix { !$0.isEmpty }
            .compactMap { line -> String? in
                guard line.hasPrefix("  "), line.dropFirst(2).first?.isLetter == true else { return nil }
                return line.dropFirst(2).split(separator: " ").first.map(String.init)
            }
    }

    @Test("no help text of any command or subcommand has a stray run of spaces inside a sentence")
    func helpTexts() async throws {
        let dir = try TemporaryDirectory()
        #expect(Self.strayRuns("when it polls that bus (in turn             with its polls"))
        #expect(Self.strayRuns("otherwise probe opens the bus itself. Read-only: only            "))
        #expect(!Self.strayRuns("  --socket <socket>       The daemon's control socket. (default:"))
        #expect(!Self.strayRuns("                          devices, stores, uplink"))
        var queue: [(String, [String])] = [("kilntally", []), ("kilntallyd", [])]
        var seen = 0
        while !queue.isEmpty {
            let (product, path) = queue.removeFirst()
            let (status, help) = try await Self.run(product, path + ["--help"], in: dir)
            let name = ([product] + path).joined(separator: " ")
            #expect(status == 0, "\(name) --help: \(help)")
            seen += 1
            for line in help.split(separator: "\n").map(String.init) where Self.strayRuns(line) {
                Issue.record("\(name) --help: stray spaces in \"\(line)\"")
            }
            queue += Self.subcommands(help).map { (product, path + [$0]) }
        }
        #expect(seen > 25, "walked \(seen) help texts: the SUBCOMMANDS sections were not found")
    }

    @Test("an invalid --log-level or --parity is a usage error (64) that names the valid values")
    func usageErrors() async throws {
        let dir = try TemporaryDirectory()
        let (status, output) = try await Self.run("kilntallyd", ["--log-level", "verbose", "--config", dir.file("none.toml")], in: dir)
        #expect(status == 64, "\(output)")
        for level in ["trace", "debug", "info", "notice", "warning", "error", "critical"] {
            #expect(output.contains(level), "\(output)")
        }
        // A valid level passes; the missing file is what stops it then.
        let valid = try await Self.run("kilntallyd", ["--log-level", "debug", "--config", dir.file("none.toml")], in: dir)
        #expect(valid.status == 78, "\(valid.output)")
        for command in [["probe", "--serial", dir.file("tty")], ["simulate", "--rtu", dir.file("tty")]] {
            let (status, output) = try await Self.run("kilntally", command + ["--parity", "evn"], in: dir)
            #expect(status == 64, "\(command[0]): \(output)")
            #expect(output.contains("'none'") && output.contains("'even'") && output.contains("'odd'"), "\(command[0]): \(output)")
        }
    }

    /// Starts kilntallyd (its socket DIR/k.sock) on one TCP bus `line1` at 127.0.0.1:`busPort` with a device per name
    /// (unit ids from 1), each reading holding register 0 as `rate` every 200 ms.
    static func startDaemon(_ dir: TemporaryDirectory, busPort: Int, devices: [String]) throws -> PeerProcess {
        let deviceSections = devices.enumerated().map { i, name in
            """
            [[device]]
            name = "\(name)"
            bus = "line1"
            unit_id = \(i + 1)
            poll_interval = "200ms"
              [[device.channel]]
              name = "rate"
              table = "holding"
              address = 0

            """
        }
        try (DaemonConfig.header(mqttPort: try FreePort.allocate(), profileDirs: []) + """
            [[bus]]
            name = "line1"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(busPort)

            """ + deviceSections.joined()).write(toFile: dir.file("k.toml"), atomically: true, encoding: .utf8)
        return try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                               arguments: ["--config", dir.file("k.toml"), "--state-dir", dir.file("state"), "--socket", dir.file("k.sock")],
                               logDirectory: dir.path)
    }

    /// A daemon with two devices on a TCP bus nobody listens on, once its status shows the bus error: the daemon,
    /// the port, and the bus in `status --json`.
    static func daemonOnClosedBus(_ dir: TemporaryDirectory) async throws -> (daemon: PeerProcess, port: Int, bus: [String: Any]) {
        let closedPort = try FreePort.allocate()
        let daemon = try startDaemon(dir, busPort: closedPort, devices: ["belt1", "belt2"])
        var bus: [String: Any] = [:]
        do {
            try await daemon.waitUntil("the bus error in status", timeout: .seconds(20)) {
                // The daemon is another process: a blocking request here starves nothing it needs.
                guard let reply = try? ControlClient.request(["op": "status"], socket: dir.file("k.sock"), timeout: .seconds(5)),
                      let first = ((reply["result"] as? [String: Any])?["buses"] as? [[String: Any]])?.first else { return false }
                bus = first
                return first["error"] is String
            }
        } catch {
            daemon.stop()
            throw error
        }
        return (daemon, closedPort, bus)
    }

    @Test("a bus that cannot be opened: its devices' last error is the bus's and the lost poll counts; events and log lines name the bus once")
    func busThatCannotBeOpened() async throws {
        let dir = try TemporaryDirectory()
        let (daemon, closedPort, bus) = try await Self.daemonOnClosedBus(dir)
        defer { daemon.stop() }
        let busError = try #require(bus["error"] as? String)
        #expect(busError.hasPrefix("bus line1 (127.0.0.1:\(closedPort)): modbus_connect failed: "), "\(busError)")
        for d in bus["devices"] as? [[String: Any]] ?? [] {
            #expect(d["last_error"] as? String == busError, "\(d)")
            #expect((d["errors"] as? Int ?? 0) >= 1, "\(d)")
        }
        let (_, events) = try await Self.run("kilntally", ["events", "--socket", dir.file("k.sock")], in: dir)
        let busDown = try #require(events.split(separator: "\n").first { $0.contains("bus_down") }, "\(events)")
        #expect(busDown.contains("bus line1 (127.0.0.1:\(closedPort)) cannot be opened: modbus_connect failed: "), "\(busDown)")
        let downs = events.split(separator: "\n").filter { $0.contains("bus_down") || $0.contains("device_down") }
        #expect(downs.count == 3, "\(events)")
        for line in downs + daemon.log().split(separator: "\n").filter({ $0.contains("cannot be opened") }) {
            #expect(line.components(separatedBy: "bus line1").count == 2, "the bus named more than once: \(line)")
        }
    }

    @Test("status of a bus that cannot be opened: columns stay aligned, the bus error on a line of its own, the devices point to it")
    func statusTable() async throws {
        let dir = try TemporaryDirectory()
        let (daemon, _, bus) = try await Self.daemonOnClosedBus(dir)
        defer { daemon.stop() }
        let busError = try #require(bus["error"] as? String)
        let (status, text) = try await Self.run("kilntally", ["status", "--socket", dir.file("k.sock")], in: dir)
        #expect(status == 0, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        let header = try #require(lines.first { $0.hasPrefix("BUS ") }, "\(text)")
        func column(_ name: String) -> Int { header.range(of: name).map { header.distance(from: header.startIndex, to: $0.lowerBound) } ?? -1 }
        let rows = lines.filter { $0.contains("belt1") || $0.contains("belt2") }
        #expect(rows.count == 2, "\(text)")
        for row in rows {
            // The second device of the bus keeps its empty BUS and STATE cells: its name under DEVICE like the first's.
            #expect(row.dropFirst(column("DEVICE")).hasPrefix("belt"), "device not under DEVICE:\n\(text)")
            #expect(row.dropFirst(column("LAST ERROR")).hasPrefix("bus cannot be opened"), "\(text)")
        }
        // The bus error is not in a column: LAST GOOD READ is as wide as its title or a timestamp, not the message.
        #expect(column("LATENCY") - column("LAST GOOD READ") <= "2026-11-24T02:43:42.577Z".count + 2, "\(text)")
        let errorLine = try #require(lines.first { $0.contains("bus error:") }, "\(text)")
        #expect(errorLine.trimmingCharacters(in: .whitespaces) == "bus error: \(busError)", "\(text)")
    }

    @Test("tail into a file or pipe: each reading's line is there as it comes, before tail is killed")
    func tailFollowsIntoAFile() async throws {
        let dir = try TemporaryDirectory()
        // One channel polled five times a second: ~350 bytes a second, far from filling a 4 KiB stdio buffer in the
        // seconds this waits, so only a flush gets the lines out.
        let slave = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 4, holding: [7]))
        defer { slave.stop() }
        let daemon = try Self.startDaemon(dir, busPort: slave.port, devices: ["belt1"])
        defer { daemon.stop() }
        try await daemon.waitUntil("the control socket") { FileManager.default.fileExists(atPath: dir.file("k.sock")) }
        // stdout is the PeerProcess's log file: block-buffered, as into a pipe.
        let tail = try PeerProcess(name: "tail", executable: try RepoPaths.builtProduct("kilntally"),
                                   arguments: ["tail", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        defer { tail.stop() }
        func goodLines() -> Int { tail.log().split(separator: "\n").filter { $0.contains(" belt1/rate 7") && $0.hasSuffix(" good") }.count }
        try await tail.waitUntil("readings in tail's output while it follows", timeout: .seconds(6)) { goodLines() >= 3 }
        let seen = goodLines()
        try await tail.waitUntil("more readings as they come", timeout: .seconds(4)) { goodLines() > seen }
        tail.killHard()
        #expect(goodLines() > seen, "\(tail.log())")
    }
}
