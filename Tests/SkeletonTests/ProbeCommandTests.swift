import Foundation
import TestSupport
import Testing

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

    @Test("--device takes the bus and unit id from the configuration")
    func byDeviceName() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 8, holding: [0, 0, 4242]), unit: 5)
        defer { server.process.stop() }
        let config = dir.file("k.toml")
        try (DaemonConfig.header(site: "s", node: "n", profileDirs: []) + """
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(server.port)
            [[device]]
            name = "feeder"
            bus = "plc"
            unit_id = 5
              [[device.channel]]
              name = "x"
              register = 40003
            """).write(toFile: config, atomically: true, encoding: .utf8)
        let p = try PeerProcess(name: "probe-device", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: ["probe", "--config", config, "--device", "feeder", "--address", "2", "--count", "1"],
                                logDirectory: dir.path)
        #expect(try await p.waitForExit() == 0, "\(p.log())")
        #expect(p.log().contains("unit 5 holding 2"), "\(p.log())")
        #expect(p.log().contains("4242"), "\(p.log())")
        #expect(try server.requestLog().allSatisfy { $0.unit == 5 && $0.fc == 3 })
    }
}
