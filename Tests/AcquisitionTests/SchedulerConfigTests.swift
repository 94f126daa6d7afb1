import Acquisition
import KilnTallyCore
import ModbusKit
import Testing

/// The scheduler's bus and device keys.
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
            """)
        // 9600 8E1: 11 bits a character, 3.5 × 11 / 9600 s = 4010.4 µs; 19200 8N1: 3.5 × 10 / 19200 s = 1822.9 µs.
        #expect(c.buses.map(\.pause) == [.zero, .microseconds(4011), .microseconds(1823), .microseconds(1750), .zero, .milliseconds(25)])
    }
}
