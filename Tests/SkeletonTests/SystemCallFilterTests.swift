import Foundation
import Simulator
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The unit's SystemCallFilter= against what kilntallyd really calls. Under systemd a system call outside the filter
/// fails with EPERM (SystemCallErrorNumber=), which the daemon would meet only on the plant: here it runs under
/// strace with a TCP bus, an RTU bus on a pty (lock file, TIOCEXCL), the MQTT uplink, a control-socket request and a
/// SIGTERM stop, and every system call it made must be in the set the unit's filter lines allow, expanded by
/// `systemd-analyze syscall-filter` in the order systemd applies them.
@Suite("systemd unit: system call filter", .serialized)
struct SystemCallFilterTests {
    /// Calls the daemon makes that the filter refuses on purpose, and why that is harmless.
    static let refusedOnPurpose: [String: String] = [
        "setpriority": "libdispatch sets its worker threads' nice value for their QoS and ignores EPERM (@resources is denied)",
    ]

    @Test("every system call kilntallyd makes (TCP and RTU buses, MQTT, control socket, SIGTERM) is allowed by the unit")
    func daemonStaysInsideTheFilter() async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-seccomp")
        let allowed = try await Self.allowedSystemCalls(unit: DebianPackageTests.unitFile, logs: dir)
        #expect(allowed.contains("fdatasync") && allowed.contains("flock") && allowed.contains("ioctl"))
        #expect(allowed.contains("clock_adjtime") && !allowed.contains("settimeofday") && !allowed.contains("setrlimit"))

        let used = try await Self.systemCallsOfARun(in: dir)
        // The run did what a plant's daemon does: the clock-sync query, the serial lock, exclusive tty, durable writes.
        for call in ["clock_adjtime", "flock", "ioctl", "fdatasync", "connect", "accept", "bind"] {
            #expect(used.contains(call), "\(call) not seen: the run did not exercise it (\(used.sorted()))")
        }
        let refused = used.subtracting(allowed).subtracting(Self.refusedOnPurpose.keys)
        #expect(refused.isEmpty, "kilntallyd calls \(refused.sorted()), which systemd/kilntallyd.service's SystemCallFilter= refuses (EPERM)")
    }

    /// The system calls a unit file's SystemCallFilter= lines allow: the first line is an allow list (it is here),
    /// later lines add to it, `~` lines remove from it; systemd allows a few more implicitly.
    static func allowedSystemCalls(unit: String, logs: TemporaryDirectory) async throws -> Set<String> {
        let lines = try String(contentsOfFile: unit, encoding: .utf8).split(separator: "\n")
            .filter { $0.hasPrefix("SystemCallFilter=") }.map { String($0.dropFirst("SystemCallFilter=".count)) }
        let first = try #require(lines.first, "no SystemCallFilter= in \(unit)")
        try #require(!first.hasPrefix("~"), "the first SystemCallFilter= line is expected to be an allow list")
        var allowed: Set<String> = ["execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"]
        var cache: [String: Set<String>] = [:]
        for line in lines {
            let deny = line.hasPrefix("~")
            var names = Set<String>()
            for item in (deny ? String(line.dropFirst()) : line).split(separator: " ").map(String.init) {
                names.formUnion(try await expand(item, cache: &cache, logs: logs))
            }
            if deny { allowed.subtract(names) } else { allowed.formUnion(names) }
        }
        return allowed
    }

    /// A system call name, or every call of a @group (nested groups expanded).
    static func expand(_ item: String, cache: inout [String: Set<String>], logs: TemporaryDirectory) async throws -> Set<String> {
        guard item.hasPrefix("@") else { return [item] }
        if let known = cache[item] { return known }
        let r = try await Run.program("/usr/bin/systemd-analyze", ["syscall-filter", item], logs: logs)
        try #require(r.status == 0, "systemd-analyze syscall-filter \(item):\n\(r.output)")
        var names = Set<String>()
        for raw in r.output.split(separator: "\n").dropFirst() {  // the first line is the group's own name
            let entry = raw.trimmingCharacters(in: .whitespaces)
            if entry.isEmpty || entry.hasPrefix("#") { continue }
            names.formUnion(entry.hasPrefix("@") ? try await expand(entry, cache: &cache, logs: logs) : [entry])
        }
        cache[item] = names
        return names
    }

    /// Runs this build's kilntallyd under `strace -f -c` with a simulator on TCP, one on RTU over a socat pty pair and
    /// a mosquitto broker; returns the names of the system calls it made.
    static func systemCallsOfARun(in dir: TemporaryDirectory) async throws -> Set<String> {
        let strace = try #require(["/usr/bin/strace", "/bin/strace"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                  "strace is not installed (run deploy/setup.sh)")
        let kilntally = try RepoPaths.builtProduct("kilntally")
        let lockDir = dir.file("lock")
        try FileManager.default.createDirectory(atPath: lockDir, withIntermediateDirectories: false)
        let env = ["KILNTALLY_LOCK_DIR": lockDir]

        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.stop() }
        let tcpPort = try FreePort.allocate()
        let tcpSimulator = try PeerProcess(name: "simulate-tcp", executable: kilntally,
                                           arguments: ["simulate", "--listen", "127.0.0.1:\(tcpPort)"], logDirectory: dir.path)
        defer { tcpSimulator.stop() }
        try await tcpSimulator.waitForPort(tcpPort)
        let pty = try await SocatPTYPair.start(in: dir)
        defer { pty.stop() }
        let rtuSimulator = try PeerProcess(name: "simulate-rtu", executable: kilntally,
                                           arguments: ["simulate", "--rtu", pty.b, "--baud", "19200"], environment: env,
                                           logDirectory: dir.path)
        defer { rtuSimulator.stop() }
        try await rtuSimulator.waitUntil("the RTU simulator to open its line") { rtuSimulator.log().contains("simulating belt scale on") }

        let config = dir.file("kilntally.toml")
        try (DaemonConfig.header(mqttPort: broker.port, batchInterval: "200ms")
            + BeltScaleSimulator.exampleDeviceConfig(busName: "kiln-plc", port: tcpPort, device: "belt1", pollInterval: "200ms")
            + "\n"
            + BeltScaleSimulator.exampleDeviceConfig(busName: "scale-house", rtuDevice: pty.a, baud: 19200, parity: .even,
                                                     device: "belt2", pollInterval: "200ms")
        ).write(toFile: config, atomically: true, encoding: .utf8)

        let socket = dir.file("kilntally.sock")
        let summary = dir.file("strace.txt")
        let traced = try PeerProcess(name: "strace-kilntallyd", executable: strace,
                                     arguments: ["-f", "-qq", "-c", "-o", summary, try RepoPaths.builtProduct("kilntallyd"),
                                                 "--config", config, "--state-dir", dir.file("state"), "--socket", socket],
                                     environment: env, logDirectory: dir.path)
        defer { traced.stop() }
        let readings = dir.file("state/readings/segments")
        try await traced.waitUntil("both buses polled and readings stored", timeout: .seconds(30)) {
            traced.log().contains("connected to MQTT broker") && FileManager.default.fileExists(atPath: socket)
                && ((try? FileManager.default.contentsOfDirectory(atPath: readings)) ?? []).contains {
                    (Stat.size("\(readings)/\($0)") ?? 0) > 2_000
                }
        }
        let resend = try await Run.program(kilntally, ["uplink", "resend", "--from-seq", "1", "--socket", socket], logs: dir)
        #expect(resend.status == 0 || resend.status == 1, "uplink resend through the control socket:\n\(resend.output)")

        // SIGTERM to the daemon itself (strace's child), not to strace: strace reports when its tracee exits.
        let child = try await Run.program("/usr/bin/pgrep", ["-P", "\(traced.pid)"], logs: dir)
        let daemonPID = try #require(Int32(child.output.split(separator: "\n").first ?? ""), "no kilntallyd under strace: \(child.output)")
        kill(daemonPID, SIGTERM)
        let status = try await traced.waitForExit(timeout: .seconds(30))
        #expect(status == 0, "kilntallyd under strace exited with \(status):\n\(traced.log())")
        #expect(!traced.log().contains("error"), "the daemon logged errors, so the run was not a healthy one:\n\(traced.log())")

        // "% time  seconds  usecs/call  calls  errors syscall" rows; the name is the last column.
        let table = try String(contentsOfFile: summary, encoding: .utf8)
        var used = Set<String>()
        for row in table.split(separator: "\n") {
            let columns = row.split(separator: " ")
            guard columns.count >= 5, Double(columns[0]) != nil, let name = columns.last, name != "total" else { continue }
            used.insert(String(name))
        }
        try #require(used.count > 20, "strace summary:\n\(table)")
        return used
    }
}
