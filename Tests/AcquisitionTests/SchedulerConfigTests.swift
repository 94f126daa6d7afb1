import Acquisition
import KilnTallyCore
import ModbusKit
import Testing

/// The scheduler's bus and device keys (pause, reconnect backoff, retries).
extension AcquisitionConfigTests {
    @Test("bus pause: none for tcp and t3.5 for rtu by default (3.5 character times, 1.75 ms above 19200 baud); as written otherwise")
    func pauseDefaults() throws {
        let c = try decode("""
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "10.0.0.5"

            [[bus]]
            name = "scalehouse"
            kind = "rtu"
            device = "/dev/ttyUSB0"

            [[bus]]
            name = "n81"
            kind = "rtu"
            device = "/dev/ttyUSB1"
            baud = 19200
            parity = "none"

            [[bus]]
            name = "fast"
            kind = "rtu"
            device = "/dev/ttyUSB2"
            baud = 115200

            [[bus]]
            name = "nopause"
            kind = "rtu"
            device = "/dev/ttyUSB3"
            pause = "0s"

            [[bus]]
            name = "gateway"
            kind = "tcp"
            host = "10.0.0.6"
            pause = "25ms"
            reconnect_backoff_max = "5s"
            """)
        // 9600 8E1: 11 bits a character, 3.5 × 11 / 9600 s = 4010.4 µs; 19200 8N1: 3.5 × 10 / 19200 s = 1822.9 µs.
        #expect(c.buses.map(\.pause) == [.zero, .microseconds(4011), .microseconds(1823), .microseconds(1750), .zero, .milliseconds(25)])
        #expect(c.buses.map(\.reconnectBackoffMax) == [.seconds(30), .seconds(30), .seconds(30), .seconds(30), .seconds(30), .seconds(5)])
    }

    @Test func retriesDefaultAndRange() throws {
        let channel = """
              [[device.channel]]
              name = "v"
              table = "holding"
              address = 0
            """
        #expect(try decode(base + channel).devices[0].retries == 1)
        #expect(try decode(base + "retries = 0\n" + channel).devices[0].retries == 0)
        do {
            _ = try decode(base.replacingOccurrences(of: "max_gap = 4", with: "pause = \"11s\"") + "retries = 6\n" + channel)
            Issue.record("accepted 6 retries and an 11 s pause")
        } catch {
            #expect(error.diagnostics.map(\.description) == [
                "k.toml:5: bus[0].pause: expected a duration between 0s and 10s but found \"11s\"",
                "k.toml:11: device[0].retries: expected an integer between 0 and 5 but found 6",
            ])
        }
    }
}
