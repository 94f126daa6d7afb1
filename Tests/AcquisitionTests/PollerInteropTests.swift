@testable import Acquisition
import KilnTallyCore
import Logging
import ModbusKit
import TestSupport
import Testing

@Suite("Bus poller against pymodbus", .serialized)
struct PollerInteropTests {
    @Test("a merged request refused with exception 2 is isolated: only the bad channel is marked, the rest keep their values")
    func exceptionTwoIsIsolated() async throws {
        let dir = try TemporaryDirectory()
        // Ten holding registers exist; the channel at 12 does not.
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 10, holding: [7, 0, 0x0001, 0x86A0, 0, 0, 0, 0, 0, 0]))
        defer { server.process.stop() }
        var logger = Logger(label: "poller-test")
        logger.logLevel = .critical
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port),
                            timeouts: ModbusTimeouts(response: .seconds(2)), limits: .init())
        let device = DeviceConfig(id: "feeder", bus: "plc", unitID: 1, pollInterval: .seconds(1), channels: [
            channel("count", .holding, 0, .uint16),
            channel("total", .holding, 2, .uint32),
            channel("missing", .holding, 12, .uint16),
        ])
        #expect(RequestPlanner.plan(device.channels, limits: bus.limits).count == 1, "all three merge into one request")
        let poller = try BusPoller(bus: bus, devices: [device], clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }

        for round in 0..<2 {
            let (readings, error) = await poller.poll(device, index: 0)
            let byName = Dictionary(uniqueKeysWithValues: readings.map { ($0.channel.rawValue, $0) })
            #expect(readings.map(\.channel.rawValue) == ["count", "total", "missing"], "round \(round)")
            #expect(byName["count"]?.value == .uint(7) && byName["count"]?.quality == .good)
            #expect(byName["total"]?.value == .uint(100_000) && byName["total"]?.quality == .good)
            #expect(byName["missing"]?.quality == .deviceFault && byName["missing"]?.value == ReadingValue.none)
            if round == 0 {
                #expect(error?.exception == .illegalDataAddress, "the first poll meets the refusal")
            } else {
                #expect(error == nil, "afterwards the refused channel rests and the merged plan works")
            }
        }
    }
}
