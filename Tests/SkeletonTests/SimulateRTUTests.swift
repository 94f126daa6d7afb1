import Foundation
import TestSupport
import Testing

@Suite("kilntally simulate --rtu", .serialized)
struct SimulateRTUTests {
    @Test("serves RTU on a pty that probe reads from the other end; a second opener of its line is refused, naming the simulator")
    func simulateOverRTUAndExclusiveLine() async throws {
        let dir = try TemporaryDirectory()
        let lockDir = dir.file("lock")
        try FileManager.default.createDirectory(atPath: lockDir, withIntermediateDirectories: false)
        let env = ["KILNTALLY_LOCK_DIR": lockDir]
        let pty = try await SocatPTYPair.start(in: dir)
        defer { pty.stop() }
        let kilntally = try RepoPaths.builtProduct("kilntally")
        let simulator = try PeerProcess(name: "simulate", executable: kilntally,
                                        arguments: ["simulate", "--rtu", pty.b, "--baud", "19200", "--line-speed", "19200"],
                                        environment: env, logDirectory: dir.path)
        defer { simulator.stop() }
        try await simulator.waitUntil("the simulator to open its line") { simulator.log().contains("simulating belt scale on \(pty.b)") }
        #expect(simulator.log().contains("(Modbus RTU, unit 1, 19200 baud, replies at the pace of 19200 baud)"), "\(simulator.log())")

        // Belt speed 1.2 m/s is 1200 in the uint32 at 1013 (ABCD).
        let probe = try PeerProcess(name: "probe", executable: kilntally,
                                    arguments: ["probe", "--serial", pty.a, "--baud", "19200", "--unit", "1", "--address", "1013", "--count", "2"],
                                    environment: env, logDirectory: dir.path)
        #expect(try await probe.waitForExit() == 0, "\(probe.log())")
        let rows = probe.log().split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.contains { $0.count >= 3 && $0[0] == "1013" && $0[1] == "ABCD" && $0[2] == "1200" }, "\(probe.log())")

        // The simulator's own end of the line is taken: another process opening it is told who has it.
        let pts = try FileManager.default.destinationOfSymbolicLink(atPath: pty.b)
        let lockName = "LCK.." + (pts as NSString).lastPathComponent
        let intruder = try PeerProcess(name: "intruder", executable: kilntally,
                                       arguments: ["probe", "--serial", pty.b, "--address", "1013", "--count", "2"],
                                       environment: env, logDirectory: dir.path)
        #expect(try await intruder.waitForExit() == 1, "\(intruder.log())")
        #expect(intruder.log().contains("modbus_connect failed: \(pty.b) (\(pts)) is in use by PID \(simulator.pid) (kilntally), lock file \(lockDir)/\(lockName) (errno 16)"),
                "\(intruder.log())")

        simulator.stop()
        #expect(simulator.terminationStatus == 0, "\(simulator.log())")
        #expect(!FileManager.default.fileExists(atPath: "\(lockDir)/\(lockName)"), "the simulator released its lock on SIGTERM")
    }
}
