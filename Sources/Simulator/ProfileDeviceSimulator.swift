import Acquisition
import KilnTallyCore
import Logging
import ModbusKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Serves one simulated device laid out by a device profile (or any channel list) over Modbus TCP, or Modbus RTU on
/// a serial device (one end of a socat pty pair), with the libmodbus server. What it does follows the channels' roles: a `weight` channel makes it a weighbridge with
/// trucks (the stability bit, range bits and ticket number move with them), `rate`/`totalizer` channels make it a
/// feeder whose counters roll over at their width, a `level` channel moves slowly, a `heartbeat` counts.
public final class ProfileDeviceSimulator: Sendable {
    public struct Parameters: Sendable {
        public var seed: UInt64 = 1
        public var updateInterval: Duration = .milliseconds(100)
        public var trucks: [WeighbridgeModel.Truck] = []
        public var divisionKilograms: Int = 20
        public var firstTicket: UInt64 = 1
        public var feeder = FeederModel(meanTonnesPerHour: 30, swingTonnesPerHour: 5, period: .seconds(60), noise: 0.02)
        /// Totalizers' values at the start, in their channel's unit (e.g. 4294967.0 t to see a BW500 roll over soon).
        public var totalStart: Double = 1234.567
        public var beltSpeed: Double = 1.2
        /// Fixed values by channel name (e.g. the BW500's device identifier 2).
        public var fixed: [String: Double] = [:]
        /// Misbehaviour by time: from `start` for `duration`, the server answers with `fault`.
        public var faults: [ScheduledFault] = []
        /// Replies delayed by their wire time at this baud rate.
        public var lineSpeed: LineSpeed?
        /// Serve Modbus RTU on a serial device instead of TCP.
        public var rtu: SerialEndpoint?
        public init() {}
    }

    public struct SerialEndpoint: Sendable, Hashable {
        public var device: String
        public var baud: Int
        public var parity: ModbusParity
        public var unit: UInt8
        public init(device: String, baud: Int = 9600, parity: ModbusParity = .even, unit: UInt8 = 1) {
            self.device = device
            self.baud = baud
            self.parity = parity
            self.unit = unit
        }
    }

    public struct ScheduledFault: Sendable, Hashable {
        public var start: Duration
        public var duration: Duration
        public var fault: ModbusFault
        public init(start: Duration, duration: Duration, fault: ModbusFault) {
            self.start = start
            self.duration = duration
            self.fault = fault
        }
    }

    public let name: String
    public let channels: [ChannelConfig]
    public let parameters: Parameters
    private let server: any ModbusServer
    /// Where it serves: "127.0.0.1:1502" or "/tmp/ttyV1 (RTU unit 3)".
    public let endpoint: String
    private let state: Mutex<State>
    private let logger: Logger

    struct State {
        var random: SeededRandom
        var weighbridge: WeighbridgeModel
        var feeder: FeederModel
        var heartbeat: UInt64 = 0
        var elapsed: Duration = .zero
    }

    public init(name: String, channels: [ChannelConfig], host: String, port: Int, parameters: Parameters = .init(),
                logger: Logger) throws(ModbusError) {
        self.name = name
        self.channels = channels
        self.parameters = parameters
        self.logger = logger
        func size(_ tables: Set<RegisterTable>) -> Int {
            channels.filter { tables.contains($0.table) }.map { $0.address + $0.registerCount }.max() ?? 0
        }
        let counts = ModbusRegisterCounts(
            coils: size([.coil]), discreteInputs: size([.discrete]), holdingRegisters: size([.holding]),
            inputRegisters: size([.input]))
        if let rtu = parameters.rtu {
            server = try ModbusRTUServer(device: rtu.device, baud: rtu.baud, parity: rtu.parity, unit: rtu.unit,
                                         counts: counts, lineSpeed: parameters.lineSpeed, logger: logger)
            endpoint = "\(rtu.device) (RTU unit \(rtu.unit), \(rtu.baud) baud)"
        } else {
            server = try ModbusTCPServer(host: host, port: port, counts: counts, lineSpeed: parameters.lineSpeed, logger: logger)
            endpoint = "\(host):\(port)"
        }
        state = Mutex(State(random: SeededRandom(seed: parameters.seed),
                            weighbridge: WeighbridgeModel(trucks: parameters.trucks, divisionKilograms: parameters.divisionKilograms,
                                                          firstTicket: parameters.firstTicket),
                            feeder: parameters.feeder))
    }

    /// Starts serving with the registers at their start values; returns the bound TCP port (0 on a serial line).
    @discardableResult
    public func start() throws(ModbusError) -> Int {
        try server.start()
        step(to: .zero)
        return port
    }

    public var port: Int { (server as? ModbusTCPServer)?.port ?? 0 }
    public var requestLog: [ModbusRequestRecord] { server.requestLog }
    public func stop() { server.stop() }

    /// The passes over the weighbridge, as laid out (the truth tickets are checked against).
    public var passes: [WeighbridgeModel.Pass] { state.withLock { $0.weighbridge.passes } }
    /// Mass fed since the start, mg (the truth feed totals are checked against).
    public var fedMilligrams: UInt64 { state.withLock { $0.feeder.fedMilligrams } }

    /// Moves the registers until the task is cancelled.
    public func run() async {
        let start = ContinuousClock.now
        while !Task.isCancelled {
            do { try await Task.sleep(for: parameters.updateInterval) } catch { break }
            step(to: ContinuousClock.now - start)
        }
    }

    /// Advances the models to `elapsed` since the start and writes every channel (also used by tests to drive the
    /// device deterministically).
    public func step(to elapsed: Duration) {
        let values = state.withLock { s -> [(ChannelConfig, SimulatedValue)] in
            let dt = elapsed - s.elapsed
            s.elapsed = elapsed
            let rate = s.feeder.rate(at: elapsed, random: &s.random)
            s.feeder.advance(by: max(dt, .zero), tonnesPerHour: rate)
            s.heartbeat &+= 1
            let truck = s.weighbridge.state(at: elapsed, random: &s.random)
            return channels.compactMap { ch in value(for: ch, state: s, truck: truck).map { (ch, $0) } }
        }
        server.update { map in
            for (ch, v) in values { RegisterEncoder.write(v, for: ch, into: &map) }
        }
        server.inject(parameters.faults.last { $0.start <= elapsed && elapsed < $0.start + $0.duration }?.fault)
    }

    private func value(for ch: ChannelConfig, state s: State, truck: WeighbridgeModel.State) -> SimulatedValue? {
        if let v = parameters.fixed[ch.id.rawValue] { return .value(v) }
        let toTonnes = ch.unit?.toTonnes ?? 1
        switch ch.role {
        case .weight?: return .value(Double(truck.kilograms) * (ch.unit == .tonne ? 0.001 : 1))
        case .stable?: return .flag(truck.stable)
        case .motion?: return .flag(!truck.stable)
        case .overRange?, .underRange?, .net?: return .flag(false)
        case .ticketNumber?: return ch.type == .string ? .text(String(truck.ticket)) : .counts(truck.ticket)
        case .vehicleID?: return .text(truck.vehicle)
        case .rate?: return .value(s.feeder.tonnesPerHour / toTonnes)
        case .totalizer?: return totalizer(ch, fed: s.feeder.fedMilligrams)
        case .level?, .stock?: return .value(50 + 20 * sin(s.elapsed.seconds / 600))
        case .heartbeat?: return .counts(s.heartbeat & (ch.type.registerCount == 1 ? 0xFFFF : 0xFFFF_FFFF))
        case nil: break
        }
        // Channels without a role: what a BW500 or INTECONT shows besides rate and totals.
        switch ch.unit {
        case .metrePerSecond?: return .value(parameters.beltSpeed)
        case .kilogramPerMetre?: return .value(parameters.beltSpeed > 0 ? s.feeder.tonnesPerHour / (3.6 * parameters.beltSpeed) : 0)
        default: return nil
        }
    }

    /// A totalizer shows the mass fed in whole counts on top of its start value: integer types wrap at their width
    /// (exact, in counts), float types are the value itself.
    private func totalizer(_ ch: ChannelConfig, fed milligrams: UInt64) -> SimulatedValue {
        let milligramsPerUnit = (ch.unit?.toTonnes ?? 0.001) * 1e9
        if ch.type == .float32 || ch.type == .float64 {
            return .value(parameters.totalStart + Double(milligrams) / milligramsPerUnit)
        }
        let milligramsPerCount = UInt64((ch.scale * milligramsPerUnit).rounded())
        let startCounts = UInt64(max(0, (parameters.totalStart - ch.offset) / ch.scale).rounded())
        let counts = startCounts &+ milligrams / max(1, milligramsPerCount)
        let bits = 16 * ch.registerCount
        return .counts(bits >= 64 ? counts : counts & ((1 << UInt64(bits)) - 1))
    }
}
