import Foundation
import KilnTallyCore
import TestSupport
import Testing

/// Issue 8 end to end: the simulator streams a Toledo-continuous weighbridge (trucks, garbage between frames, split
/// frames, bad checksums) into one end of a socat pty pair; kilntallyd reads the other end as a `serial_stream` bus,
/// and the tally makes the truck's ticket from it exactly as from a Modbus indicator.
@Suite("Stream weighbridge in the daemon", .serialized)
struct StreamWeighbridgeTests {
    @Test(arguments: ["toledo_continuous", "yaohua_tf0"])
    func ticketFromAStream(protocolName: String) async throws {
        let dir = try TemporaryDirectory()
        let pty = try await SocatPTYPair.start(in: dir)
        defer { pty.process.stop() }
        let toledo = protocolName == "toledo_continuous"
        let scenario = """
            seed = 11
            [[device]]
            name = "wb"
            protocol = "\(protocolName)"
            \(toledo ? "checksum = true" : "")
            serial = "\(pty.a)"
            serial_client = "\(pty.b)"
            frames_per_second = 10
            garbage_rate = 0.05
            split_rate = 0.1
            bad_checksum_rate = 0.02
            division = 20
              [[device.truck]]
              vehicle = "ZJ-B7"
              arrive = "1s"
              gross = 31480
              tare = 12260
              outbound_after = "8s"
            """
        try scenario.write(toFile: dir.file("scenario.toml"), atomically: true, encoding: .utf8)
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--scenario", dir.file("scenario.toml"), "--write-config", dir.file("sim.toml")],
                                  logDirectory: dir.path)
        defer { sim.stop() }
        try await sim.waitUntil("the simulator's config") { FileManager.default.fileExists(atPath: dir.file("sim.toml")) }
        let config = DaemonConfig.header(mqttPort: try FreePort.allocate())
            + DaemonConfig.shortShifts(cycle: "10s", grace: "1s", tickInterval: "500ms") + """
            [[weighbridge]]
            name = "wb"
            device = "wb"
            default_material = "msw"
            pair_by = "order"
            \(toledo ? "" : "stable_window = \"1s\"\nstable_tolerance = 20")

            """ + (try String(contentsOfFile: dir.file("sim.toml"), encoding: .utf8))
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        let check = try PeerProcess(name: "check", executable: try RepoPaths.builtProduct("kilntally"),
                                    arguments: ["config", "check", "--config", dir.file("kilntally.toml")], logDirectory: dir.path)
        #expect(try await check.waitForExit() == 0, "\(check.log())")
        let daemon = try PeerProcess(name: "kilntallyd", executable: try RepoPaths.builtProduct("kilntallyd"),
                                     arguments: ["--config", dir.file("kilntally.toml"), "--state-dir", dir.file("state"),
                                                 "--socket", dir.file("k.sock")], logDirectory: dir.path)
        defer { daemon.stop() }
        try await daemon.waitUntil("the ticket closed", timeout: .seconds(40)) { daemon.log().contains("ticket wb-1 revision 2 written") }
        let tickets = try PeerProcess(name: "tickets", executable: try RepoPaths.builtProduct("kilntally"),
                                      arguments: ["tickets", "--json", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        #expect(try await tickets.waitForExit() == 0)
        let list = try #require(try JSONSerialization.jsonObject(with: Data(tickets.log().utf8)) as? [[String: Any]])
        let closed = try #require(list.last { $0["status"] as? String == "closed" })
        // The truck's truth on the 20 kg division: 31,480 in, 12,260 out, 19,220 net.
        #expect(closed["gross_kg"] as? String == "31480.000" && closed["tare_kg"] as? String == "12260.000", "\(closed)")
        #expect(closed["net_kg"] as? String == "19220.000")
        // The stream's counters are in the status: frames decoded, and the injected bad checksums counted.
        let status = try PeerProcess(name: "status", executable: try RepoPaths.builtProduct("kilntally"),
                                     arguments: ["status", "--json", "--socket", dir.file("k.sock")], logDirectory: dir.path)
        #expect(try await status.waitForExit() == 0)
        let s = try #require(try JSONSerialization.jsonObject(with: Data(status.log().utf8)) as? [String: Any])
        let stream = try #require((s["streams"] as? [[String: Any]])?.first)
        #expect(stream["device_state"] as? String == "up" && (stream["frames"] as? Int ?? 0) > 50, "\(stream)")
        #expect((stream["bad_checksums"] as? Int ?? 0) > 0 && (stream["discarded_bytes"] as? Int ?? 0) > 0, "\(stream)")
        // probe: through the daemon while it reads the line; on the line itself once the daemon has let it go.
        let viaDaemon = try PeerProcess(name: "probe-daemon", executable: try RepoPaths.builtProduct("kilntally"),
                                        arguments: ["probe", "--config", dir.file("kilntally.toml"), "--device", "wb", "--socket", dir.file("k.sock")],
                                        logDirectory: dir.path)
        #expect(try await viaDaemon.waitForExit() == 0, "\(viaDaemon.log())")
        #expect(viaDaemon.log().contains("through kilntallyd") && viaDaemon.log().contains("weight = "), "\(viaDaemon.log())")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        let direct = try PeerProcess(name: "probe-direct", executable: try RepoPaths.builtProduct("kilntally"),
                                     arguments: ["probe", "--config", dir.file("kilntally.toml"), "--device", "wb", "--seconds", "1.5",
                                                 "--socket", dir.file("nobody.sock")], logDirectory: dir.path)
        #expect(try await direct.waitForExit() == 0, "\(direct.log())")
        #expect(direct.log().contains("listening to") && direct.log().contains("weight=") && direct.log().contains("frames "), "\(direct.log())")
    }
}
