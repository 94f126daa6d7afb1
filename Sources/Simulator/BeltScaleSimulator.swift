import KilnTallyCore
import Logging
import ModbusKit
#if canImport(Glibc)
import Glibc
#endif

/// A simulated belt-scale integrator, laid out like a Siemens Milltronics BW500 (DOMAIN.md §2.1; the per-item
/// offsets in 41,010–41,019 are inferred there, not verified on hardware), served by libmodbus over Modbus TCP or,
/// as unit `unit`, over Modbus RTU on a serial line (e.g. one end of a socat pty pair), optionally at the speed of a
/// real line (`LineSpeed`).
///
/// Holding registers (0-based protocol addresses; BW500 numbering in brackets), UINT32, 3 fixed decimals,
/// high word first (ABCD):
///
/// | address | BW500 | value |
/// |---|---|---|
/// | 1009 | 41,010 | rate, t/h |
/// | 1011 | 41,012 | belt load, kg/m |
/// | 1013 | 41,014 | belt speed, m/s |
/// | 1015 | 41,016 | totalizer 1, t |
/// | 1017 | 41,018 | totalizer 2, t |
///
/// Input registers, for decoding tests: 0 = rate as float32 ABCD (t/h), 2 = totalizer 1 as float32 CDAB (t),
/// 4 = totalizer 1 in kg as uint32 CDAB, 6 = a heartbeat counter (uint16, +1 per update).
/// Coil 0 = running. Discrete input 0 = belt moving (speed above 0.05 m/s).
public final class BeltScaleSimulator: Sendable {
    public struct Parameters: Sendable {
        /// Mean feed rate, t/h.
        public var meanRate: Double = 30
        /// Swing of the rate around the mean, t/h.
        public var swing: Double = 6
        /// Period of the swing.
        public var period: Duration = .seconds(60)
        /// Belt speed, m/s.
        public var speed: Double = 1.2
        /// Totalizer at start, kg.
        public var initialTotalKilograms: UInt64 = 1_234_567
        /// How often the registers move.
        public var updateInterval: Duration = .milliseconds(100)
        public init() {}
    }

    public enum Address {
        public static let rate = 1009, load = 1011, speed = 1013, total1 = 1015, total2 = 1017
        public static let rateFloat = 0, totalFloatCDAB = 2, totalKilogramsCDAB = 4, heartbeat = 6
    }

    public static let counts = ModbusRegisterCounts(coils: 16, discreteInputs: 16, holdingRegisters: 1100, inputRegisters: 16)

    /// The libmodbus server behind it (`ModbusTCPServer` or `ModbusRTUServer`).
    public let server: any ModbusServer
    private let parameters: Parameters
    private let logger: Logger

    /// Serves over Modbus TCP on `host:port` (any unit id).
    public init(
        host: String, port: Int, parameters: Parameters = .init(), lineSpeed: LineSpeed? = nil, logger: Logger
    ) throws(ModbusError) {
        self.parameters = parameters
        self.logger = logger
        server = try ModbusTCPServer(host: host, port: port, counts: Self.counts, lineSpeed: lineSpeed, logger: logger)
    }

    /// Serves over Modbus RTU on the serial device `rtuDevice` as unit `unit`; other unit ids get no answer.
    public init(
        rtuDevice: String, baud: Int = 9600, parity: ModbusParity = .even, unit: UInt8 = 1, parameters: Parameters = .init(),
        lineSpeed: LineSpeed? = nil, logger: Logger
    ) throws(ModbusError) {
        self.parameters = parameters
        self.logger = logger
        server = try ModbusRTUServer(
            device: rtuDevice, baud: baud, parity: parity, unit: unit, counts: Self.counts, lineSpeed: lineSpeed, logger: logger)
    }

    /// Starts listening (TCP) or opens the line (RTU); returns the bound TCP port (useful with port 0), 0 for RTU.
    @discardableResult
    public func start() throws(ModbusError) -> Int {
        try server.start()
        var state = State(totalKilograms: parameters.initialTotalKilograms)
        state.rateKilogramsPerHour = rateKilogramsPerHour(at: .zero)
        state.write(into: server, parameters: parameters, elapsed: .zero)
        return port
    }

    /// The bound TCP port; 0 when serving RTU.
    public var port: Int { (server as? ModbusTCPServer)?.port ?? 0 }
    public var requestCount: Int { server.requestCount }
    /// Every request the simulator received (function code, unit, address, count), oldest first.
    public var requestLog: [ModbusRequestRecord] { server.requestLog }

    /// Moves the registers until the task is cancelled.
    public func run() async {
        var state = State(totalKilograms: parameters.initialTotalKilograms)
        state.rateKilogramsPerHour = rateKilogramsPerHour(at: .zero)
        let start = ContinuousClock.now
        var last = start
        while !Task.isCancelled {
            do { try await Task.sleep(for: parameters.updateInterval) } catch { break }
            let now = ContinuousClock.now
            state.advance(by: now - last, rateKilogramsPerHour: rateKilogramsPerHour(at: now - start))
            last = now
            state.write(into: server, parameters: parameters, elapsed: now - start)
        }
    }

    public func stop() { server.stop() }

    func rateKilogramsPerHour(at elapsed: Duration) -> UInt64 {
        let t = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let p = Double(parameters.period.components.seconds) + Double(parameters.period.components.attoseconds) * 1e-18
        let tph = max(0, parameters.meanRate + parameters.swing * sin(2 * Double.pi * t / max(p, 0.001)))
        return UInt64((tph * 1000).rounded())
    }

    /// Exact integration: kilograms accumulate in integer kg·ms/h with the remainder carried, so no mass is lost
    /// to rounding however many updates there are.
    struct State {
        var totalKilograms: UInt64
        var remainder: UInt64 = 0  // kg·ms/h not yet a whole kilogram
        var rateKilogramsPerHour: UInt64 = 0
        var heartbeat: UInt16 = 0

        mutating func advance(by dt: Duration, rateKilogramsPerHour rate: UInt64) {
            let ms = UInt64(dt.components.seconds) * 1000 + UInt64(dt.components.attoseconds / 1_000_000_000_000_000)
            rateKilogramsPerHour = rate
            remainder += rate * ms
            totalKilograms += remainder / 3_600_000
            remainder %= 3_600_000
            heartbeat &+= 1
        }

        func write(into server: any ModbusServer, parameters: Parameters, elapsed: Duration) {
            let rate = rateKilogramsPerHour  // t/h × 1000
            let speedMilli = UInt64((parameters.speed * 1000).rounded())
            let loadMilli = parameters.speed > 0 ? UInt64(Double(rate) / (3.6 * parameters.speed)) : 0  // kg/m × 1000
            let total = totalKilograms  // t × 1000
            let hb = heartbeat
            server.update { map in
                func put32(_ address: Int, _ v: UInt64, wordSwap: Bool = false) {
                    let v32 = UInt32(truncatingIfNeeded: v)
                    let hi = UInt16(v32 >> 16), lo = UInt16(v32 & 0xFFFF)
                    map.holdingRegisters[address] = wordSwap ? lo : hi
                    map.holdingRegisters[address + 1] = wordSwap ? hi : lo
                }
                put32(Address.rate, rate)
                put32(Address.load, loadMilli)
                put32(Address.speed, speedMilli)
                put32(Address.total1, total)
                put32(Address.total2, total)
                let rateBits = Float(Double(rate) / 1000).bitPattern
                map.inputRegisters[Address.rateFloat] = UInt16(rateBits >> 16)
                map.inputRegisters[Address.rateFloat + 1] = UInt16(rateBits & 0xFFFF)
                let totalBits = Float(Double(total) / 1000).bitPattern
                map.inputRegisters[Address.totalFloatCDAB] = UInt16(totalBits & 0xFFFF)
                map.inputRegisters[Address.totalFloatCDAB + 1] = UInt16(totalBits >> 16)
                let kg = UInt32(truncatingIfNeeded: total)
                map.inputRegisters[Address.totalKilogramsCDAB] = UInt16(kg & 0xFFFF)
                map.inputRegisters[Address.totalKilogramsCDAB + 1] = UInt16(kg >> 16)
                map.inputRegisters[Address.heartbeat] = hb
                map.coils[0] = true
                map.discreteInputs[0] = parameters.speed > 0.05
            }
        }
    }

    /// A daemon config that reads this simulator over TCP (used by the demo and the tests).
    public static func exampleDeviceConfig(busName: String = "sim", host: String = "127.0.0.1", port: Int,
                                           device: String = "belt1", pollInterval: String = "500ms") -> String {
        """
        [[bus]]
        name = "\(busName)"
        kind = "tcp"
        host = "\(host)"
        port = \(port)
        response_timeout = "500ms"

        """ + exampleDeviceSection(busName: busName, unit: 1, device: device, pollInterval: pollInterval)
    }

    /// A daemon config that reads this simulator over RTU on the other end of its line (e.g. the other pty of a
    /// socat pair).
    public static func exampleDeviceConfig(busName: String = "sim", rtuDevice: String, baud: Int, parity: ModbusParity,
                                           unit: UInt8 = 1, device: String = "belt1", pollInterval: String = "500ms") -> String {
        let parityName = switch parity { case .none: "none"; case .even: "even"; case .odd: "odd" }
        return """
        [[bus]]
        name = "\(busName)"
        kind = "rtu"
        device = "\(rtuDevice)"
        baud = \(baud)
        parity = "\(parityName)"
        response_timeout = "500ms"

        """ + exampleDeviceSection(busName: busName, unit: unit, device: device, pollInterval: pollInterval)
    }

    private static func exampleDeviceSection(busName: String, unit: UInt8, device: String, pollInterval: String) -> String {
        """
        [[device]]
        name = "\(device)"
        bus = "\(busName)"
        unit_id = \(unit)
        poll_interval = "\(pollInterval)"

          [[device.channel]]
          name = "rate"
          table = "holding"
          address = \(Address.rate)
          type = "uint32"
          word_order = "ABCD"
          scale = 0.001
          unit = "t/h"

          [[device.channel]]
          name = "total1"
          table = "holding"
          address = \(Address.total1)
          type = "uint32"
          unit = "kg"

          [[device.channel]]
          name = "speed"
          table = "holding"
          address = \(Address.speed)
          type = "uint32"
          scale = 0.001
          unit = "m/s"

          [[device.channel]]
          name = "rate_f32"
          table = "input"
          address = \(Address.rateFloat)
          type = "float32"
          word_order = "ABCD"
          unit = "t/h"

          [[device.channel]]
          name = "total_kg_cdab"
          table = "input"
          address = \(Address.totalKilogramsCDAB)
          type = "uint32"
          word_order = "CDAB"
          unit = "kg"

          [[device.channel]]
          name = "running"
          table = "coil"
          address = 0

        """
    }
}
