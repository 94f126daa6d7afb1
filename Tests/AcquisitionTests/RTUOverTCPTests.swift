@testable import Acquisition
import KilnTallyCore
import Logging
import TestSupport
import Testing

/// docs/ACQUISITION.md's recipe for serial device servers that carry raw RTU frames over TCP (libmodbus 3.1.6 has
/// no client for that): socat makes a local pty bridged to the TCP port, and an `rtu` bus uses the pty.
@Suite("RTU over TCP through a socat pty", .serialized)
struct RTUOverTCPTests {
    @Test("an rtu bus on socat's pty reads a pymodbus server that speaks RTU framing over TCP")
    func socatRecipe() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 16, holding: [7345], typed: [
                .init(table: .holding, address: 4, type: .float32, value: 36.5, wordOrder: .abcd),
                .init(table: .holding, address: 8, type: .uint32, value: 4_294_967_200, wordOrder: .abcd),
            ]), unit: 3, rtuFraming: true)
        defer { server.stop() }
        let bridge = try await SocatTCPBridge.start(in: dir, port: server.port)
        defer { bridge.stop() }
        let config = try KilnTallyTestConfig.acquisition("""
            [profiles]
            dirs = []
            [[bus]]
            name = "scale-house"
            kind = "rtu"
            device = "\(bridge.pty)"
            baud = 19200
            parity = "none"
            response_timeout = "1s"
            [[device]]
            name = "feeder"
            bus = "scale-house"
            unit_id = 3
              [[device.channel]]
              name = "count"
              register = 40001
              [[device.channel]]
              name = "rate"
              register = 40005
              type = "float32"
              unit = "t/h"
              [[device.channel]]
              name = "total"
              register = 40009
              type = "uint32"
              scale = 0.001
              unit = "t"
            """)
        var logger = Logger(label: "rtu-over-tcp")
        logger.logLevel = .critical
        let poller = try BusPoller(bus: config.buses[0], devices: config.devices, clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }
        for round in 0..<3 {
            let (readings, error) = await poller.poll(config.devices[0], index: 0)
            #expect(error == nil, "round \(round)")
            #expect(readings.map(\.value) == [.uint(7345), .double(36.5), .double(4_294_967.2)], "round \(round)")
        }
        // pymodbus saw RTU frames for unit 3 with function code 3 only: one merged request per poll.
        let log = try server.requestLog()
        #expect(log.filter { $0.unit == 3 }.count == 3)
        #expect(log.allSatisfy { $0.fc == 3 })
    }
}
