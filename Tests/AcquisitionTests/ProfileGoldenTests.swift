@testable import Acquisition
import KilnTallyCore
import Logging
import ModbusKit
import TestSupport
import Testing

/// Built-in profiles decode what the manuals say the devices send. Register words come from the manuals' own
/// examples or are encoded by pymodbus; the expected values are worked out by hand from the manuals.
@Suite("Profile goldens", .serialized)
struct ProfileGoldenTests {
    static func profile(_ name: String) throws -> DeviceProfile {
        let library = ProfileLibrary(userDirectories: [])
        return try DeviceProfile.load(file: try #require(library.file(of: name)))
    }

    static func value(_ words: [UInt16], _ ch: ChannelConfig) -> ReadingValue? {
        let decoded = RegisterDecoder.decode(words[...], channel: ch)
        if RegisterDecoder.isSentinel(decoded, ch.sentinels) { return nil }
        return RegisterDecoder.scaled(decoded, scale: ch.scale, offset: ch.offset)
    }

    @Test("BW500: UINT32 with three fixed decimals, first word most significant (manual: 7345 -> 7.345)")
    func bw500Manual() throws {
        let p = try Self.profile("siemens-bw500")
        let total1 = try #require(p.channels.first { $0.id == "total1" })
        #expect(total1.address == 41016 - 40001)
        #expect(Self.value([0, 7345], total1) == .double(7.345))
        // 1,000,000.5 t = 1,000,000,500 counts = 0x3B9A_CBF4 (high word 0x3B9A first).
        #expect(Self.value([0x3B9A, 0xCBF4], total1) == .double(1_000_000.5))
        // The largest count before the rollover at 2^32 × 0.001 t.
        #expect(Self.value([0xFFFF, 0xFFFF], total1) == .double(4_294_967.295))
        // Text messages are numbers: 22222 invalid, 30000 off, 30014 en.
        #expect(Self.value([0, 22222], total1) == nil)
        #expect(Self.value([0, 30000], total1) == nil)
        #expect(Self.value([0, 30014], total1) == nil)
        #expect(Self.value([0, 30011], total1) == .double(30.011), "30011 is not in the manual's list")
        // The manual's format word 4608 (0x1200): bit 12 (1-based 13) = float, bits 8-10 (1-based 9-11) = 2
        // decimals, bit 11 (1-based 12) = 0, shifted left.
        func bit(_ n: Int) -> ChannelConfig { ChannelConfig(id: ChannelID("b\(n)"), table: .holding, address: 92, type: .bit, bit: n) }
        #expect(Self.value([4608], bit(12)) == .bool(true))
        #expect(Self.value([4608], bit(11)) == .bool(false))
        #expect([8, 9, 10].map { Self.value([4608], bit($0)) } == [.bool(false), .bool(true), .bool(false)])
    }

    @Test("Flintec FT-112: 32-bit status B2 unstable, B3 net, B12 centre of zero; error B3/B4 ADC under/over range")
    func ft112Manual() throws {
        let p = try Self.profile("flintec-ft112")
        func ch(_ name: String) throws -> ChannelConfig { try #require(p.channels.first { $0.id.rawValue == name }) }
        // Status with B2, B3 and B12 set and two decimals (B27..B31 = 0b00010 -> 0x1000_0000): 0x1000_100C,
        // high word first.
        let status: [UInt16] = [0x1000, 0x100C]
        #expect(try Self.value(status, ch("unstable")) == .bool(true))
        #expect(try Self.value(status, ch("net_mode")) == .bool(true))
        #expect(try Self.value(status, ch("centre_of_zero")) == .bool(true))
        #expect(try Self.value([0x0000, 0x0003], ch("unstable")) == .bool(false), "B0, B1 only")
        #expect(try Self.value([0x0000, 0x0010], ch("adc_over_range")) == .bool(true))
        #expect(try Self.value([0x0000, 0x0010], ch("adc_under_range")) == .bool(false))
        #expect(try ch("unstable").role == .motion, "B2 = 1 means unstable: the motion polarity")
        // -20 kg as SINT32: 0xFFFF_FFEC.
        #expect(try Self.value([0xFFFF, 0xFFEC], ch("actual")) == .int(-20))
    }

    @Test("FT-112 and BW500 profiles read through the poller from pymodbus-encoded registers")
    func profilesOverTheWire() async throws {
        let dir = try TemporaryDirectory()
        // FT-112 at unit 1 (addresses 0-15) and a BW500 map at 1009-1019 in the same server.
        var map = PymodbusRegisterMap(size: 1201, typed: [
            .init(table: .holding, address: 0, type: .int32, value: -20, wordOrder: .abcd),        // actual
            .init(table: .holding, address: 2, type: .int32, value: 15_480, wordOrder: .abcd),     // tare
            .init(table: .holding, address: 4, type: .int32, value: 15_460, wordOrder: .abcd),     // gross
            .init(table: .holding, address: 6, type: .uint32, value: 0x1000_100C, wordOrder: .abcd),  // status
            .init(table: .holding, address: 8, type: .uint32, value: 0x10, wordOrder: .abcd),      // error: B4
            .init(table: .holding, address: 10, type: .uint32, value: 123_456, wordOrder: .abcd),  // heartbeat
            .init(table: .holding, address: 14, type: .uint32, value: 90_017, wordOrder: .abcd),  // CN label
            .init(table: .holding, address: 1009, type: .uint32, value: 7345, wordOrder: .abcd),   // rate
            .init(table: .holding, address: 1011, type: .uint32, value: 22222, wordOrder: .abcd),  // load: invalid
            .init(table: .holding, address: 1013, type: .uint32, value: 1_250, wordOrder: .abcd),  // speed
            .init(table: .holding, address: 1015, type: .uint32, value: 4_294_967_295, wordOrder: .abcd),
            .init(table: .holding, address: 1017, type: .uint32, value: 1_000_000_500, wordOrder: .abcd),
        ])
        map.holding = Array(repeating: 0, count: 64)
        map.holding[61] = 0  // format word: high word first
        map.holding[63] = 2  // device identifier of a BW500
        let server = try await PymodbusServer.startTCP(in: dir, map: map)
        defer { server.process.stop() }
        let config = try KilnTallyTestConfig.acquisition("""
            [profiles]
            dirs = []
            [[bus]]
            name = "plc"
            kind = "tcp"
            host = "127.0.0.1"
            port = \(server.port)
            [[device]]
            name = "wb"
            bus = "plc"
            profile = "flintec-ft112"
              [[device.channel]]
              name = "actual"
              zero_band = 40
            [[device]]
            name = "belt"
            bus = "plc"
            profile = "siemens-bw500"
              [[device.channel]]
              name = "total1"
              max_rate = 60
              [[device.channel]]
              name = "total2"
              max_rate = 60
            """)
        var logger = Logger(label: "profile-golden")
        logger.logLevel = .critical
        let poller = try BusPoller(bus: config.buses[0], devices: config.devices, clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }

        let (wb, wbError) = await poller.poll(config.devices[0], index: 0)
        #expect(wbError == nil)
        let w = Dictionary(uniqueKeysWithValues: wb.map { ($0.channel.rawValue, $0) })
        #expect(w["actual"]?.value == .int(-20) && w["actual"]?.unit == .kilogram)
        #expect(w["tare"]?.value == .int(15_480) && w["gross"]?.value == .int(15_460))
        #expect(w["unstable"]?.value == .bool(true) && w["net_mode"]?.value == .bool(true))
        #expect(w["centre_of_zero"]?.value == .bool(true))
        #expect(w["adc_over_range"]?.value == .bool(true) && w["adc_under_range"]?.value == .bool(false))
        #expect(w["heartbeat"]?.value == .uint(123_456))
        #expect(w["ticket_no"]?.value == .uint(90_017))
        #expect(wb.allSatisfy { $0.quality == .good })
        #expect(RequestPlanner.plan(config.devices[0].channels, limits: config.buses[0].limits).count == 1,
                "the FT-112's 16 registers are one request")

        let (belt, beltError) = await poller.poll(config.devices[1], index: 1)
        #expect(beltError == nil)
        let b = Dictionary(uniqueKeysWithValues: belt.map { ($0.channel.rawValue, $0) })
        #expect(b["device_id"]?.value == .uint(2))
        #expect(b["rate"]?.value == .double(7.345) && b["rate"]?.unit == .tonnePerHour)
        #expect(b["load"]?.quality == .invalid && b["load"]?.value == ReadingValue.none && b["load"]?.raw == [0, 22222])
        #expect(b["speed"]?.value == .double(1.25))
        #expect(b["total1"]?.value == .double(4_294_967.295))
        #expect(b["total2"]?.value == .double(1_000_000.5))
    }
}

/// Decodes an acquisition config from text the way the daemon does (tests only).
enum KilnTallyTestConfig {
    static func acquisition(_ text: String, file: String = "test.toml") throws(ConfigErrors) -> AcquisitionConfig {
        try AcquisitionConfig.load(text: text, file: file)
    }
}
