import Foundation
@testable import ModbusKit
import TestSupport
import Testing

/// Exclusive serial open (lock file + TIOCEXCL) on a real socat pty pair, with pymodbus answering on the far end.
@Suite(.serialized)
struct SerialExclusiveTests {
    static let baud = 19200

    /// The lock directory the tests use: the real /run/lock where it exists, else a temporary one.
    static func lockDirectory(_ dir: TemporaryDirectory) throws -> String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: "/run/lock", isDirectory: &isDirectory), isDirectory.boolValue {
            return "/run/lock"
        }
        let path = dir.file("lock")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    struct Line {
        let dir: TemporaryDirectory
        let pty: SocatPTYPair
        let server: PymodbusServer
        let lockDirectory: String
        /// The pts device behind the `a` link, and the lock file that names it (taken while the link exists).
        let device: String
        let lockPath: String

        static func start() async throws -> Line {
            let dir = try TemporaryDirectory()
            let pty = try await SocatPTYPair.start(in: dir)
            do {
                let server = try await PymodbusServer.startRTU(
                    in: dir, device: pty.b, baud: baud, parity: "N", map: Fixture.map, unit: Fixture.unit)
                let lockDirectory = try SerialExclusiveTests.lockDirectory(dir)
                return Line(dir: dir, pty: pty, server: server, lockDirectory: lockDirectory,
                            device: try #require(SerialLine.realPath(pty.a)),
                            lockPath: lockDirectory + "/" + (try #require(LockFile.name(forDevice: pty.a))))
            } catch {
                pty.stop()
                throw error
            }
        }

        func client(_ name: String, device: String? = nil) throws -> ModbusClient {
            try ModbusClient(
                name: name, transport: .rtu(device: device ?? pty.a, baud: baud, parity: .none, dataBits: 8, stopBits: 1),
                timeouts: .init(response: .seconds(1)), lockDirectory: lockDirectory, logger: Fixture.logger(name))
        }

        func lockContent() -> String? { try? String(contentsOfFile: lockPath, encoding: .utf8) }

        /// Stops the peers; every test leaves the lock directory as it found it.
        func stop() {
            server.stop()
            pty.stop()
            #expect(lockContent() == nil, "lock file \(lockPath) left behind")
        }
    }

    @Test("a second client on the same line is refused with the device and the owner's PID, then succeeds once the first closes")
    func secondOpenerIsRefusedUntilTheFirstCloses() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        let first = try line.client("first")
        defer { first.shutdown() }
        #expect(try await first.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) == Array(Fixture.holding[0..<2]))
        #expect(line.lockContent() == String(format: "%10d\n", getpid()), "HDB format: the PID in ten characters and a newline")

        // The second opener names the line by its real /dev/pts path: the same device, so the same lock.
        let second = try line.client("second", device: line.device)
        defer { second.shutdown() }
        let error = try #require(await expectModbusError("second open") { () async throws(ModbusError) in
            try await second.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) })
        let comm = try String(contentsOfFile: "/proc/self/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(error.errno == EBUSY && error.call == "modbus_connect" && error.isConnectionFailure)
        #expect(error.description == "bus second (\(line.device)@19200,8N1): modbus_connect failed: \(line.device) is in use by "
                + "PID \(getpid()) (\(comm), this process), lock file \(line.lockPath) (errno \(EBUSY))")
        #expect(!second.isConnected)
        // The refusal left the owner alone: its lock and its line still work.
        #expect(line.lockContent() == String(format: "%10d\n", getpid()))
        #expect(try await first.readInputRegisters(unit: Fixture.unit, address: 0, count: 3) == Array(Fixture.input[0..<3]))

        await first.close()
        #expect(line.lockContent() == nil, "closing removes the lock file")
        #expect(try await second.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) == Array(Fixture.holding[0..<2]))
        #expect(line.lockContent() == String(format: "%10d\n", getpid()))
        let refused = try #require(await expectModbusError("first again") { () async throws(ModbusError) in
            try await first.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) })
        #expect(refused.errno == EBUSY, "now the first is the second opener: \(refused)")
        second.shutdown()
        #expect(line.lockContent() == nil, "shutdown releases the lock")
    }

    @Test("the open line is in TIOCEXCL mode, so no other (unprivileged) process can open it, until the client closes")
    func ttyIsExclusiveWhileOpen() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        // A Python peer opens the tty on its own: TIOCGEXCL tells the mode; as root it also tries as user nobody,
        // whom the kernel refuses with EBUSY while the mode is set (root itself is exempt).
        chmod(line.device, 0o666)
        let script = """
            import fcntl, os, struct, sys
            dev = sys.argv[1]
            fd = os.open(dev, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            print("excl", struct.unpack("i", fcntl.ioctl(fd, 0x80045440, b"\\0\\0\\0\\0"))[0])  # TIOCGEXCL
            os.close(fd)
            if os.getuid() == 0:
                pid = os.fork()
                if pid == 0:
                    os.setgid(65534); os.setuid(65534)
                    try:
                        os.close(os.open(dev, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)); print("nobody ok")
                    except OSError as e:
                        print("nobody errno", e.errno)
                    sys.stdout.flush(); os._exit(0)
                os.waitpid(pid, 0)
            """
        func probe(_ name: String) async throws -> String {
            let p = try PeerProcess(name: name, executable: RepoPaths.venvPython, arguments: ["-c", script, line.device],
                                    logDirectory: line.dir.path)
            #expect(try await p.waitForExit() == 0, "\(p.log())")
            return p.log()
        }
        let client = try line.client("excl")
        defer { client.shutdown() }
        #expect(try await client.readCoils(unit: Fixture.unit, address: 0, count: 4) == Array(Fixture.coils[0..<4]))
        let held = try await probe("held")
        #expect(held.contains("excl 1"), "\(held)")
        if getuid() == 0 { #expect(held.contains("nobody errno \(EBUSY)"), "\(held)") }

        await client.close()
        let released = try await probe("released")
        #expect(released.contains("excl 0"), "\(released)")
        if getuid() == 0 { #expect(released.contains("nobody ok"), "\(released)") }
    }

    @Test("a stale lock (its PID no longer runs, or is our own PID from an earlier life) is taken over", arguments: ["dead", "own"])
    func staleLockIsTakenOver(owner: String) async throws {
        let line = try await Line.start()
        defer { line.stop() }
        let stalePID: Int32
        if owner == "dead" {
            let gone = try PeerProcess(name: "gone", executable: "/bin/true", arguments: [], logDirectory: line.dir.path)
            #expect(try await gone.waitForExit() == 0)
            stalePID = gone.pid  // reaped: no process has this PID now
            #expect(kill(stalePID, 0) == -1 && errno == ESRCH)
        } else {
            stalePID = getpid()  // no connection of ours holds it: left by an earlier process that had our PID
        }
        try String(format: "%10d\n", stalePID).write(toFile: line.lockPath, atomically: false, encoding: .utf8)
        defer { unlink(line.lockPath) }
        let client = try line.client("taker")
        defer { client.shutdown() }
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) == Array(Fixture.holding[0..<2]))
        #expect(line.lockContent() == String(format: "%10d\n", getpid()))
        client.shutdown()
        #expect(line.lockContent() == nil)
    }

    @Test("a live lock of another program (minicom-style: PID only, no flock) is respected and named")
    func foreignLiveLockIsRespected() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        let script = """
            import os, sys, time
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"%10d\\n" % os.getpid()); os.close(fd)
            print("locked", flush=True)
            time.sleep(60)
            """
        let holder = try PeerProcess(name: "holder", executable: RepoPaths.venvPython, arguments: ["-c", script, line.lockPath],
                                     logDirectory: line.dir.path)
        defer {
            holder.stop()
            unlink(line.lockPath)
        }
        try await holder.waitUntil("the lock file") { holder.log().contains("locked") }
        let comm = try String(contentsOfFile: "/proc/\(holder.pid)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let client = try line.client("polite")
        defer { client.shutdown() }
        let error = try #require(await expectModbusError("open") { () async throws(ModbusError) in
            try await client.readCoils(unit: Fixture.unit, address: 0, count: 1) })
        #expect(error.errno == EBUSY)
        #expect(error.message == "\(line.pty.a) (\(line.device)) is in use by PID \(holder.pid) (\(comm)), lock file \(line.lockPath)")
        #expect(line.lockContent() == String(format: "%10d\n", holder.pid), "the foreign lock is untouched")
    }

    @Test("a missing device takes no lock and fails as before")
    func missingDeviceTakesNoLock() async throws {
        let dir = try TemporaryDirectory()
        let lockDirectory = dir.file("lock")
        try FileManager.default.createDirectory(atPath: lockDirectory, withIntermediateDirectories: false)
        let client = try ModbusClient(
            name: "gone", transport: .rtu(device: dir.file("ttyGone"), baud: 9600, parity: .even, dataBits: 8, stopBits: 1),
            lockDirectory: lockDirectory, logger: Fixture.logger("gone"))
        defer { client.shutdown() }
        let error = try #require(await expectModbusError("open") { () async throws(ModbusError) in
            try await client.readCoils(unit: 1, address: 0, count: 1) })
        #expect(error.errno == ENOENT)
        #expect(try FileManager.default.contentsOfDirectory(atPath: lockDirectory).isEmpty)
    }
}
