@testable import Acquisition
import KilnTallyCore
import Logging
import ModbusKit
import Simulator
import TestSupport
import Synchronization
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
            #expect(byName["missing"]?.exceptionCode == 2)
            if round == 0 {
                #expect(error?.exception == .illegalDataAddress, "the first poll meets the refusal")
            } else {
                #expect(error == nil, "afterwards the refused channel rests and the merged plan works")
            }
        }
    }
}

@Suite("Bus poller sentinels", .serialized)
struct PollerSentinelTests {
    @Test("a BW500-style sentinel (22222) becomes an invalid reading with no value and its raw register kept")
    func sentinelIsNoValue() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 4, holding: [22222, 7345]))
        defer { server.process.stop() }
        var logger = Logger(label: "sentinel-test")
        logger.logLevel = .critical
        var load = channel("load", .holding, 0, .uint16)
        load.sentinels = [22222, 30000]
        load.scale = 0.001
        var rate = channel("rate", .holding, 1, .uint16)
        rate.sentinels = [22222]
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port), timeouts: ModbusTimeouts(response: .seconds(2)))
        let device = DeviceConfig(id: "bw500", bus: "plc", unitID: 1, pollInterval: .seconds(1), channels: [load, rate])
        let poller = try BusPoller(bus: bus, devices: [device], clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }
        let (readings, error) = await poller.poll(device, index: 0)
        #expect(error == nil)
        #expect(readings[0].quality == .invalid && readings[0].value == ReadingValue.none && readings[0].raw == [22222])
        #expect(readings[1].quality == .good && readings[1].value == .uint(7345))
    }
}

@Suite("Bus poller bit and string channels", .serialized)
struct PollerBitStringTests {
    @Test("a status bit and a ticket text read from pymodbus in one merged request")
    func bitAndString() async throws {
        let dir = try TemporaryDirectory()
        // Flintec-style 32-bit status at 6-7 (B2 unstable set, B3 net clear), plate text "AB-123" at 8-11.
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(
            size: 16, holding: [0, 0, 0, 0, 0, 0, 0x0000, 0x0004, 0x4142, 0x2D31, 0x3233, 0x0000]))
        defer { server.process.stop() }
        var logger = Logger(label: "bits-test")
        logger.logLevel = .critical
        var unstable = channel("unstable", .holding, 6, .bit)
        unstable.bit = 2
        unstable.wordBits = 32
        var net = channel("net", .holding, 6, .bit)
        net.bit = 3
        net.wordBits = 32
        var plate = channel("plate", .holding, 8, .string)
        plate.length = 4
        let bus = BusConfig(name: "scale", transport: .tcp(host: "127.0.0.1", port: server.port), timeouts: ModbusTimeouts(response: .seconds(2)))
        let device = DeviceConfig(id: "wb", bus: "scale", unitID: 1, pollInterval: .seconds(1), channels: [unstable, net, plate])
        #expect(RequestPlanner.plan(device.channels, limits: bus.limits).count == 1)
        let poller = try BusPoller(bus: bus, devices: [device], clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }
        let (readings, error) = await poller.poll(device, index: 0)
        #expect(error == nil)
        #expect(readings.map(\.value) == [.bool(true), .bool(false), .string("AB-123")])
        #expect(readings[2].raw == [0x4142, 0x2D31, 0x3233, 0x0000])
    }
}

@Suite("Read-only on the wire", .serialized)
struct ReadOnlyWireTests {
    @Test("polling the simulator (over TCP, and over RTU on a pty) sends only function codes 1-4, exactly the planned requests per poll",
          arguments: ["tcp", "rtu"])
    func onlyReadFunctionCodes(link: String) async throws {
        var logger = Logger(label: "wire-test")
        logger.logLevel = .critical
        let dir = try TemporaryDirectory()
        let simulator: BeltScaleSimulator
        let transport: ModbusTransport
        var pty: SocatPTYPair?
        if link == "tcp" {
            simulator = try BeltScaleSimulator(host: "127.0.0.1", port: 0, logger: logger)
            transport = .tcp(host: "127.0.0.1", port: try simulator.start())
        } else {
            pty = try await SocatPTYPair.start(in: dir)
            simulator = try BeltScaleSimulator(rtuDevice: pty!.b, baud: 19200, logger: logger)
            try simulator.start()
            transport = .rtu(device: pty!.a, baud: 19200, parity: .even, dataBits: 8, stopBits: 1)
        }
        defer {
            simulator.stop()
            pty?.stop()
        }
        let channels = [
            channel("rate", .holding, BeltScaleSimulator.Address.rate, .uint32),
            channel("total1", .holding, BeltScaleSimulator.Address.total1, .uint32),
            channel("speed", .holding, BeltScaleSimulator.Address.speed, .uint32),
            channel("rate_f32", .input, BeltScaleSimulator.Address.rateFloat, .float32),
            channel("running", .coil, 0, .bool),
            channel("moving", .discrete, 0, .bool),
        ]
        let bus = BusConfig(name: "sim", transport: transport, timeouts: ModbusTimeouts(response: .seconds(2)))
        let device = DeviceConfig(id: "belt1", bus: "sim", unitID: 1, pollInterval: .seconds(1), channels: channels)
        let poller = try BusPoller(bus: bus, devices: [device], clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }
        for _ in 0..<10 {
            let (readings, error) = await poller.poll(device, index: 0)
            #expect(error == nil && readings.allSatisfy { $0.quality == .good })
        }
        let log = simulator.requestLog
        let plan = RequestPlanner.plan(channels, limits: bus.limits)
        #expect(log.count == 10 * plan.count, "\(log.count) requests for 10 polls of a \(plan.count)-request plan")
        #expect(log.allSatisfy { $0.unit == 1 && $0.isAnswered })
        #expect(Set(log.map(\.functionCode)) == [1, 2, 3, 4], "coils, discrete inputs, holding and input registers")
        #expect(log.allSatisfy { (1...4).contains($0.functionCode) }, "never a write or any other function code")
        #expect(Set(log.map { "\($0.functionCode)@\($0.address)+\($0.count)" })
                == Set(plan.map { "\(functionCode($0.table))@\($0.address)+\($0.count)" }))
    }
}
