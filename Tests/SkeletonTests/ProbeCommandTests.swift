import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("kilntally probe", .serialized)
struct ProbeCommandTests {
    @Test("values pymodbus encoded in known word orders are found in the matching rows")
    func interpretationsSideBySide() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 16, typed: [
            .init(table: .holding, address: 0, type: .float32, value: 123.25, wordOrder: .abcd),
            .init(table: .holding, address: 2, type: .uint32, value: 100_000, wordOrder: .cdab),
        ]))
        defer { server.process.stop() }
        let p = try PeerProcess(name: "probe", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: ["probe", "--host", "127.0.0.1", "--port", String(server.port), "--unit", "1",
                                            "--table", "holding", "--address", "0", "--count", "4"],
                                logDirectory: dir.path)
        #expect(try await p.waitForExit() == 0, "\(p.log())")
        let lines = p.log().split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(lines.contains { $0.count >= 5 && $0[0] == "0" && $0[1] == "ABCD" && $0[4] == "123.25" }, "\(p.log())")
        #expect(lines.contains { $0.count >= 3 && $0[0] == "2" && $0[1] == "CDAB" && $0[2] == "100000" }, "\(p.log())")
    }

    @Test("an illegal address is reported with the device's exception, exit 1")
    func exception() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 4))
        defer { server.process.stop() }
        let p = try PeerProcess(name: "probe-bad", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: ["probe", "--host", "127.0.0.1", "--port", String(server.port), "--address", "100"],
                                logDirectory: dir.path)
        #expect(try await p.waitForExit() == 1)
        #expect(p.log().contains("Modbus exception 2"), "\(p.log())")
    }

    /// DIR/k.toml: bus `plc` on 127.0.0.1:`port` and device `feeder` (`unit`) reading holding register 2; its path.
    static func writeConfig(_ dir: TemporaryDirectory, port: Int, unit: Int) throws -> String {
        let config = dir.file("k.toml")
        try (DaemonConfig.header(site: "s", node: "n", profileDirs: []) + """
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(port)
            [[device]]
            name = "feeder"
            bus = "plc"
            unit_id = \(unit)
              [[device.channel]]
              name = "x"
              register = 40003
            """).write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    @Test("--device takes the bus and unit id from the configuration")
    func byDeviceName() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 8, holding: [0, 0, 4242]), unit: 5)
        defer { server.process.stop() }
        let config = try Self.writeConfig(dir, port: server.port, unit: 5)
        let p = try PeerProcess(name: "probe-device", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: ["probe", "--config", config, "--device", "feeder", "--address", "2", "--count", "1"],
                                logDirectory: dir.path)
        #expect(try await p.waitForExit() == 0, "\(p.log())")
        #expect(p.log().contains("unit 5 holding 2"), "\(p.log())")
        #expect(p.log().contains("4242"), "\(p.log())")
        #expect(try server.requestLog().allSatisfy { $0.unit == 5 && $0.fc == 3 })
    }

    /// A Unix socket bound at `path`, listening (never accepting) as a daemon's control socket would, or not, as one
    /// a killed daemon left. Close-on-exec: peers other tests spawn meanwhile must not keep it listening.
    static func unixSocket(_ path: String, listening: Bool) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in for (i, b) in Array(path.utf8).enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard fd >= 0, rc == 0, !listening || listen(fd, 4) == 0 else { throw PeerError("socket \(path): errno \(errno)") }
        return fd
    }

    @Test("--config when the daemon's socket refuses us (EACCES): the error, the socket and the group to join, exit 69, the bus left alone; with no daemon (a stale socket) probe opens the bus itself")
    func socketPermissionDenied() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 8, holding: [0, 0, 4242]))
        defer { server.process.stop() }
        let config = try Self.writeConfig(dir, port: server.port, unit: 1)
        let socketPath = dir.file("k.sock")
        let fd = try Self.unixSocket(socketPath, listening: true)
        var listening = true
        defer { if listening { close(fd) } }
        // The daemon's socket is 0660 in its group. As root (tests run as root) the probe runs as user nobody, who is
        // not in that group; as another user, a socket without any permission refuses its owner too.
        var executable = try RepoPaths.builtProduct("kilntally")
        var prefix: [String] = []
        if getuid() == 0 {
            chmod(socketPath, 0o660)
            chmod(dir.path, 0o755)
            chmod(config, 0o644)
            prefix = ["--reuid=65534", "--regid=65534", "--clear-groups", executable]
            executable = "/usr/bin/setpriv"
        } else {
            chmod(socketPath, 0)
        }
        var st = stat()
        #expect(stat(socketPath, &st) == 0)
        let group = try #require(getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) })
        let denied = try PeerProcess(name: "probe-denied", executable: executable,
                                     arguments: prefix + ["probe", "--config", config, "--device", "feeder", "--address", "2", "--count", "1",
                                                          "--socket", socketPath],
                                     logDirectory: dir.path)
        #expect(try await denied.waitForExit() == 69, "\(denied.log())")
        #expect(denied.log().contains("cannot reach the daemon at \(socketPath): Permission denied"), "\(denied.log())")
        #expect(denied.log().contains("not opening bus plc here") && denied.log().contains("member of group \(group)"), "\(denied.log())")
        #expect(!denied.log().contains("4242"), "probe opened the bus itself:\n\(denied.log())")
        #expect(try server.requestLog().isEmpty, "probe opened the bus itself")

        // No daemon behind the socket file (one killed without removing it): probe opens the bus itself. (Without
        // write permission the answer would still be EACCES: the kernel checks it before it looks for a listener,
        // so a refused probe cannot tell whether a daemon runs.)
        close(fd)
        listening = false
        unlink(socketPath)
        close(try Self.unixSocket(socketPath, listening: false))
        chmod(socketPath, 0o666)
        let stale = try PeerProcess(name: "probe-stale", executable: executable,
                                    arguments: prefix + ["probe", "--config", config, "--device", "feeder", "--address", "2", "--count", "1",
                                                         "--socket", socketPath],
                                    logDirectory: dir.path)
        #expect(try await stale.waitForExit() == 0 && stale.log().contains("4242"), "\(stale.log())")
        #expect(try server.requestLog().count == 1)
    }
}
