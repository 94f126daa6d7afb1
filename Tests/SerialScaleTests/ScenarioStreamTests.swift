import Foundation
import KilnTallyCore
import SerialScale
import Simulator
import TestSupport
import Testing

@Suite("Scenario stream indicators", .serialized)
struct ScenarioStreamTests {
    @Test("a stream device in a scenario, and the daemon sections --write-config prints for it")
    func decodeAndDaemonConfig() throws {
        let scenario = try Scenario.load(text: """
            seed = 5
            [[device]]
            name = "wb-east"
            protocol = "toledo_continuous"
            checksum = true
            serial = "/tmp/ttyS-b"
            serial_client = "/tmp/ttyS-a"
            baud = 4800
            parity = "even"
            data_bits = 7
            frames_per_second = 12
            garbage_rate = 0.01
            split_rate = 0.02
            bad_checksum_rate = 0.005
            division = 10
            trucks = 3

            [[device]]
            name = "wb-west"
            protocol = "yaohua_tf0"
            unit = "t"
            decimals = 2
              [[device.truck]]
              vehicle = "A1"
              arrive = "1s"
              gross = 30000
              tare = 12000
            """, file: "s.toml")
        let east = try #require(scenario.devices.first?.stream)
        #expect(east.parameters.scaleProtocol == .toledoContinuous && east.parameters.checksum)
        #expect(east.parameters.framesPerSecond == 12 && east.parameters.trucks.count == 3 && east.parameters.divisionKilograms == 10)
        #expect(east.line == "/tmp/ttyS-b" && east.client == "/tmp/ttyS-a" && east.settings.description == "4800,7E1")
        #expect(scenario.devices[0].daemonConfig(port: 0) == """
            [[bus]]
            name = "sim-wb-east"
            kind = "serial_stream"
            device = "/tmp/ttyS-a"
            baud = 4800
            parity = "even"
            data_bits = 7
            stop_bits = 1

            [[device]]
            name = "wb-east"
            bus = "sim-wb-east"
            protocol = "toledo_continuous"
            unit = "kg"
            checksum = true
              [[device.channel]]
              name = "weight"
              zero_band = 20


            """)
        let west = try #require(scenario.devices.last?.stream)
        #expect(west.line == nil && west.client == nil && west.settings.description == "9600,8N1")
        #expect(west.parameters.unit == .tonne && west.parameters.decimals == 2)
        let text = scenario.devices[1].daemonConfig(port: 0, streamDevice: "/dev/pts/9")
        #expect(text.contains("device = \"/dev/pts/9\"") && text.contains("protocol = \"yaohua_tf0\"\nunit = \"t\"\n"))
        #expect(text.contains("zero_band = 0.04") && !text.contains("checksum"))
    }

    @Test("stream device mistakes name the file, line and key")
    func errors() {
        func diagnostics(_ device: String) -> [String] {
            do {
                _ = try Scenario.load(text: "[[device]]\nname = \"x\"\n" + device, file: "s.toml")
                return []
            } catch {
                return error.diagnostics.map(\.description)
            }
        }
        #expect(diagnostics("protocol = \"yaohua_tf0\"\nchecksum = true\n")
                == ["s.toml:4: device[0].checksum: only toledo_continuous has an optional checksum (yaohua_tf0's XOR is always sent; xk3190_a12 has none)"])
        #expect(diagnostics("protocol = \"xk3190_a12\"\nserial = \"/tmp/b\"\n")
                == ["s.toml:4: device[0].serial: give `serial_client` too: the device the daemon reads from (the other end of the pty pair)"])
        #expect(diagnostics("protocol = \"toledo_continuous\"\nprofile = \"generic-weighbridge\"\n")
                == ["s.toml:4: device[0].profile: `profile` is for a Modbus device; a stream indicator (`protocol`) has no profile"])
        #expect(diagnostics("listen = \"127.0.0.1:0\"\n") == ["s.toml:1: device[0]: a device needs `profile` (a Modbus device) or `protocol` (a stream indicator)"])
        #expect(diagnostics("profile = \"generic-weighbridge\"\nframes_per_second = 5\n")
                == ["s.toml:4: device[0].frames_per_second: `frames_per_second` is only for a stream indicator (`protocol`)"])
        #expect(diagnostics("protocol = \"yaohua_tf0\"\nunit = \"t\"\ndecimals = 1\ndivision = 25\n")
                == ["s.toml:5: device[0].decimals: a division of 25 kg is not a whole number of the last digit of a display in t with 1 decimals"])
        // The heaviest truck, 30,000 kg plus the motion noise, is 3,020,000 in hundredths of a kg: seven digits.
        #expect(diagnostics("protocol = \"yaohua_tf0\"\ndecimals = 2\ntruck = [{ vehicle = \"A\", arrive = \"1s\", gross = 30000, tare = 9000 }]\n")
                == ["s.toml:4: device[0].decimals: a display in kg with 2 decimals has six digits: 30200 kg does not fit"])
    }

    @Test("kilntally simulate --scenario streams on a pty of its own and writes the config that reads it")
    func simulateCommand() async throws {
        let dir = try TemporaryDirectory()
        try """
            seed = 2
            [[device]]
            name = "wb2"
            protocol = "xk3190_a12"
            unit = "t"
            decimals = 3
            frames_per_second = 20
            garbage_rate = 0.2
              [[device.truck]]
              vehicle = "A1"
              arrive = "0s"
              gross = 30000
              tare = 12000
            """.write(toFile: dir.file("s.toml"), atomically: true, encoding: .utf8)
        let kilntally = try RepoPaths.builtProduct("kilntally")
        let sim = try PeerProcess(name: "simulate", executable: kilntally,
                                  arguments: ["simulate", "--scenario", dir.file("s.toml"), "--write-config", dir.file("sim.toml"),
                                              "--truth", dir.file("truth.json"), "--duration", "2"],
                                  environment: ["KILNTALLY_LOCK_DIR": dir.path], logDirectory: dir.path)
        defer { sim.stop() }
        try await sim.waitUntil("the simulator to print its pty") { sim.log().contains("read from /dev/pts/") }
        #expect(sim.log().contains("simulating wb2 (xk3190_a12 stream, 9600,8N1) on /dev/pts/"), "\(sim.log())")
        let config = try String(contentsOfFile: dir.file("sim.toml"), encoding: .utf8)
        let device = try #require(config.split(separator: "\n").first { $0.hasPrefix("device = ") }?
            .dropFirst("device = \"".count).dropLast())
        #expect(config.contains("kind = \"serial_stream\"") && config.contains("protocol = \"xk3190_a12\""))
        let reader = try LineReader(path: String(device), protocol: .xk3190A12, checksum: false)
        #expect(try await sim.waitForExit() == 0, "\(sim.log())")
        let (parser, frames) = await reader.finish(expecting: .max, timeout: .milliseconds(200))
        #expect(frames.count >= 10 && frames.allSatisfy { $0.unit == .tonne && $0.weight?.decimals == 3 })
        #expect(parser.counters.discardedBytes > 0 && parser.counters.badChecksums == 0)
        let truth = try String(contentsOfFile: dir.file("truth.json"), encoding: .utf8)
        #expect(truth.contains("\"protocol\":\"xk3190_a12\"") && truth.contains("\"kg\":30000"), "\(truth)")
    }
}
