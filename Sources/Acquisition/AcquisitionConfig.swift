import KilnTallyCore
import ModbusKit

/// A configured bus: one serial line or one TCP endpoint, polled by one executor.
public struct BusConfig: Sendable, Hashable {
    public var name: String
    public var transport: ModbusTransport
    public var timeouts: ModbusTimeouts
    public var limits: PlannerLimits = .init()
    /// Silence between the end of one response (or timeout) and the next request on the bus.
    public var pause: Duration
    /// Longest wait between attempts to re-open a bus whose connection cannot be made (the wait doubles up to this).
    public var reconnectBackoffMax: Duration

    /// `pause` nil is the transport's default (`defaultPause(for:)`).
    public init(name: String, transport: ModbusTransport, timeouts: ModbusTimeouts, limits: PlannerLimits = .init(),
                pause: Duration? = nil, reconnectBackoffMax: Duration = .seconds(30)) {
        self.name = name
        self.transport = transport
        self.timeouts = timeouts
        self.limits = limits
        self.pause = pause ?? Self.defaultPause(for: transport)
        self.reconnectBackoffMax = reconnectBackoffMax
    }

    /// TCP: none. RTU: the Modbus serial-line inter-frame gap t3.5 — 3.5 character times at the line's framing
    /// (start + data + parity + stop bits per character), fixed at 1.75 ms above 19200 baud as the serial-line spec
    /// recommends. libmodbus does not keep this gap itself: it writes the next request as soon as it is asked to,
    /// tens of microseconds after the last byte of the previous response.
    public static func defaultPause(for transport: ModbusTransport) -> Duration {
        guard case .rtu(_, let baud, let parity, let dataBits, let stopBits) = transport, baud > 0 else { return .zero }
        if baud > 19200 { return .microseconds(1750) }
        let bitsPerCharacter = 1 + dataBits + (parity == .none ? 0 : 1) + stopBits
        // 3.5 × bits / baud seconds, in whole microseconds rounded up.
        let micros = (35 * bitsPerCharacter * 1_000_000 + 10 * baud - 1) / (10 * baud)
        return .microseconds(micros)
    }
}

public struct ChannelConfig: Sendable, Hashable {
    public var id: ChannelID
    public var table: RegisterTable
    public var address: Int
    public var type: ValueType
    public var wordOrder: WordOrder
    public var scale: Double
    public var offset: Double
    public var unit: Unit?
    /// Decoded values (before scale and offset) that mean "no value", e.g. the BW500's 22222 and 30000-30014.
    public var sentinels: Set<Int64> = []
    /// For `bit`: which bit, 0 = least significant.
    public var bit: Int? = nil
    /// For `bit`: the width of the status word the bit is in, 16 (one register) or 32 (two, word order applies).
    public var wordBits: Int = 16
    /// For `string`: how many registers hold the text.
    public var length: Int? = nil

    public init(id: ChannelID, table: RegisterTable, address: Int, type: ValueType, wordOrder: WordOrder = .abcd,
                scale: Double = 1, offset: Double = 0, unit: Unit? = nil, sentinels: Set<Int64> = [],
                bit: Int? = nil, wordBits: Int = 16, length: Int? = nil) {
        self.id = id
        self.table = table
        self.address = address
        self.type = type
        self.wordOrder = wordOrder
        self.scale = scale
        self.offset = offset
        self.unit = unit
        self.sentinels = sentinels
        self.bit = bit
        self.wordBits = wordBits
        self.length = length
    }

    /// Registers (or bits) the channel occupies.
    public var registerCount: Int {
        switch type {
        case .bit: wordBits / 16
        case .string: length ?? 1
        default: type.registerCount
        }
    }
}

public struct DeviceConfig: Sendable, Hashable {
    public var id: DeviceID
    public var bus: String
    public var unitID: UInt8
    public var pollInterval: Duration
    public var channels: [ChannelConfig]
    /// Longest wait between probes of a device that does not answer (the backoff doubles up to this).
    public var backoffMax: Duration = .seconds(60)
    /// How often a timed-out request is sent again while the device is up (a device that is down gets no retries).
    public var retries: Int = 1
}

public struct AcquisitionConfig: Sendable, Hashable {
    public var buses: [BusConfig]
    public var devices: [DeviceConfig]

    public func devices(on bus: String) -> [DeviceConfig] { devices.filter { $0.bus == bus } }
}

extension AcquisitionConfig {
    /// A register reference number as manuals print them (40001 = holding address 0), or nil if it is not one.
    /// As a TOML integer a 6-digit coil number (000001-065536) looks like a 5-digit one, so coils are 1-9999 only.
    public static func reference(_ n: Int) -> (RegisterTable, Int)? {
        switch n {
        case 1...9999: (.coil, n - 1)
        case 10001...19999: (.discrete, n - 10001)
        case 30001...39999: (.input, n - 30001)
        case 40001...49999: (.holding, n - 40001)
        case 100_001...165_536: (.discrete, n - 100_001)
        case 300_001...365_536: (.input, n - 300_001)
        case 400_001...465_536: (.holding, n - 400_001)
        default: nil
        }
    }

    /// The `[[bus]]` and `[[device]]` sections this module registers with the core config loader.
    public static var configSections: [ConfigKey] {
        [
            ConfigKey("bus", .arrayOfTables(ConfigTable([
                ConfigKey("name", .string, required: true, doc: "Name of the bus, used by devices and in every log line and error; [A-Za-z0-9_-]."),
                ConfigKey("kind", .oneOf(["tcp", "rtu"]), required: true, doc: "`tcp` for Modbus TCP, `rtu` for Modbus RTU on a serial line."),
                ConfigKey("host", .string, doc: "TCP: host name or IP address of the device or gateway (required for kind = \"tcp\")."),
                ConfigKey("port", .integer(min: 1, max: 65535), default: .integer(502), doc: "TCP: port."),
                ConfigKey("device", .string, doc: "RTU: serial device path, e.g. /dev/ttyUSB0 (required for kind = \"rtu\")."),
                ConfigKey("baud", .integer(min: 300, max: 1_000_000), default: .integer(9600), doc: "RTU: baud rate."),
                ConfigKey("parity", .oneOf(["none", "even", "odd"]), default: .string("even"), doc: "RTU: parity (Modbus' default framing is 8E1)."),
                ConfigKey("data_bits", .integer(min: 7, max: 8), default: .integer(8), doc: "RTU: data bits."),
                ConfigKey("stop_bits", .integer(min: 1, max: 2), default: .integer(1), doc: "RTU: stop bits."),
                ConfigKey("response_timeout", .duration, default: .string("500ms"), doc: "How long to wait for the start of a response before the request counts as timed out."),
                ConfigKey("byte_timeout", .duration, doc: "Longest gap allowed between bytes of one response; libmodbus' default (500 ms) when absent."),
                ConfigKey("max_registers_per_request", .integer(min: 1, max: 125), default: .integer(125), doc: "Registers read by one request, at most (lower it for gateways that cannot take the protocol's 125)."),
                ConfigKey("max_bits_per_request", .integer(min: 1, max: 2000), default: .integer(2000), doc: "Coils or discrete inputs read by one request, at most."),
                ConfigKey("max_gap", .integer(min: 0, max: 124), default: .integer(16), doc: "Unused registers a request may read between two channels, to read them with one request instead of two."),
                ConfigKey("pause", .durationRange(min: .zero, max: .seconds(10)), doc: "Silence kept between the end of one response (or of a timeout) and the next request on this bus — between the requests of one device, between devices, and before reads other callers (the probe) run in turn. Default for tcp: 0. Default for rtu: the serial-line inter-frame gap t3.5 at the bus' framing — 3.5 character times, e.g. 4 ms at 9600 baud 8E1 (11 bits per character), fixed at 1.75 ms above 19200 baud as the Modbus serial-line spec says. libmodbus 3.1.6 does not keep that gap itself (it sends the next request tens of microseconds after the last byte of a response), and a slave that sees the next frame start too soon may take both for one and answer neither. Raise it for slaves that need more time between requests (some indicators and gateways want 10-50 ms)."),
                ConfigKey("reconnect_backoff_max", .duration, default: .string("30s"), doc: "When the bus cannot be (re)opened — connection refused, host unreachable, serial device missing — it is tried again after 2, 4, 8 … times the shortest poll_interval of its devices, at most this long apart; its devices are not polled meanwhile, and the outage is logged and reported once (bus_down, then bus_up), not per attempt."),
            ])), doc: "Modbus buses: one per serial line or TCP endpoint. Each bus is polled by its own thread."),
            ConfigKey("device", .arrayOfTables(ConfigTable([
                ConfigKey("name", .string, required: true, doc: "Device name as it appears in readings, topics and logs; [A-Za-z0-9_-]."),
                ConfigKey("bus", .string, required: true, doc: "Name of the `[[bus]]` the device is on."),
                ConfigKey("unit_id", .integer(min: 0, max: 255), default: .integer(1), doc: "Modbus unit (slave) id."),
                ConfigKey("poll_interval", .duration, default: .string("1s"), doc: "How often the device is read."),
                ConfigKey("backoff_max", .duration, default: .string("60s"), doc: "A device that does not answer is probed again after 2, 4, 8 … poll intervals, at most this long apart, so it costs at most one timeout per probe and the other devices on the bus keep their cadence."),
                ConfigKey("retries", .integer(min: 0, max: 5), default: .integer(1), doc: "How many times a request that got no answer (a timeout, or a gateway's exception 10 or 11 for the slave behind it) is sent again, while the device is up. Each retry waits for the device's next turn on the bus (the other devices that are due go first), so a retry never costs a neighbour more than one response timeout. A device that is down (its last poll got no answer at all) gets no retries: exactly one request per backoff interval (see backoff_max), which keeps a dead unit at ⌈window / backoff_max⌉ + 1 requests in any window once its backoff has reached the cap. An exception 6 answer (server device busy) is not counted here: it is retried up to 3 times, after 1/8, 1/4 and 1/2 of the bus' response_timeout, and then reported as a device fault; other exceptions are not retried."),
                ConfigKey("channel", .arrayOfTables(ConfigTable([
                    ConfigKey("name", .string, required: true, doc: "Channel name, unique within the device; [A-Za-z0-9_-]."),
                    ConfigKey("table", .oneOf(RegisterTable.allCases.map(\.rawValue)), doc: "Modbus table: coil, discrete (input), holding (register) or input (register). Give `table` and `address`, or `register`."),
                    ConfigKey("address", .integer(min: 0, max: 65535), doc: "0-based protocol address of the first register or bit (holding register 40001 is address 0)."),
                    ConfigKey("register", .integer(min: 1, max: 465_536), doc: "Instead of table + address, a register reference number as manuals print them: 40001-49999 or 400001-465536 holding, 30001-39999 or 300001-365536 input, 10001-19999 or 100001-165536 discrete, 1-9999 coil (6-digit coil numbers cannot be told from 5-digit ones when written as numbers: use table + address)."),
                    ConfigKey("type", .oneOf(ValueType.allCases.map(\.rawValue)), doc: "Value type; bool for coils and discrete inputs (the default there), uint16 by default for registers; `bit` (with `bit`) for one bit of a status word, `string` (with `length`) for text."),
                    ConfigKey("bit", .integer(min: 0, max: 31), doc: "For type = \"bit\": the bit, 0 = least significant."),
                    ConfigKey("word_bits", .oneOf(["16", "32"]), default: .string("16"), doc: "For type = \"bit\": width of the status word holding the bit: \"16\" (one register) or \"32\" (two registers; word_order applies), e.g. \"32\" for the Flintec FT-112 status."),
                    ConfigKey("length", .integer(min: 1, max: 125), doc: "For type = \"string\": registers holding the text, two characters each."),
                    ConfigKey("word_order", .oneOf(WordOrder.allCases.map(\.rawValue)), default: .string("ABCD"), doc: "Byte/word order of multi-register values: ABCD (high word first), CDAB (word swap), BADC (byte swap), DCBA (both)."),
                    ConfigKey("scale", .float(), default: .float(1), doc: "Multiplier applied to the decoded value."),
                    ConfigKey("offset", .float(), default: .float(0), doc: "Added to the value after scaling."),
                    ConfigKey("unit", .oneOf(Unit.allCases.map(\.rawValue)), doc: "Engineering unit of the scaled value (closed set)."),
                    ConfigKey("sentinels", .array(.integer()), doc: "Raw decoded values (before scale and offset) that mean \"no value\", e.g. [22222, 30000, 30001, -32768, 32767] for a Siemens BW500; such a reading is stored with quality invalid and no value, its raw registers kept."),
                ])), required: true, doc: "The values read from the device."),
            ])), doc: "Modbus devices and the channels read from each."),
        ]
    }

    /// Builds the acquisition config from a validated document; semantic errors go to the reader's diagnostics.
    public static func decode(_ root: ConfigReader) -> AcquisitionConfig {
        var buses: [BusConfig] = []
        var busNames = Set<String>()
        for bus in root.tables("bus") {
            let name = bus.string("name") ?? ""
            if !isPlainName(name) { bus.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !busNames.insert(name).inserted { bus.error("name", "bus '\(name)' is defined more than once") }
            let transport: ModbusTransport
            switch bus.string("kind") {
            case "rtu":
                guard let device = bus.string("device") else {
                    bus.error(nil, "an rtu bus needs `device` (the serial port, e.g. /dev/ttyUSB0)")
                    continue
                }
                let parity: ModbusParity = switch bus.string("parity") {
                case "none": .none
                case "odd": .odd
                default: .even
                }
                transport = .rtu(device: device, baud: Int(bus.int("baud") ?? 9600), parity: parity,
                                 dataBits: Int(bus.int("data_bits") ?? 8), stopBits: Int(bus.int("stop_bits") ?? 1))
            default:
                guard let host = bus.string("host"), !host.isEmpty else {
                    bus.error(nil, "a tcp bus needs `host`")
                    continue
                }
                transport = .tcp(host: host, port: Int(bus.int("port") ?? 502))
            }
            let timeouts = ModbusTimeouts(response: bus.duration("response_timeout") ?? .milliseconds(500),
                                          byte: bus.duration("byte_timeout"))
            let limits = PlannerLimits(maxRegisters: Int(bus.int("max_registers_per_request") ?? 125),
                                       maxBits: Int(bus.int("max_bits_per_request") ?? 2000),
                                       maxGap: Int(bus.int("max_gap") ?? 16))
            buses.append(BusConfig(name: name, transport: transport, timeouts: timeouts, limits: limits,
                                   pause: bus.duration("pause"),
                                   reconnectBackoffMax: bus.duration("reconnect_backoff_max") ?? .seconds(30)))
        }

        var devices: [DeviceConfig] = []
        var deviceNames = Set<String>()
        for dev in root.tables("device") {
            let name = dev.string("name") ?? ""
            if !isPlainName(name) { dev.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !deviceNames.insert(name).inserted { dev.error("name", "device '\(name)' is defined more than once") }
            let bus = dev.string("bus") ?? ""
            if !busNames.contains(bus) {
                dev.error("bus", "no [[bus]] named '\(bus)'" + (busNames.isEmpty ? " (no buses are defined)" : "; defined: \(busNames.sorted().joined(separator: ", "))"))
            }
            var channels: [ChannelConfig] = []
            var channelNames = Set<String>()
            for ch in dev.tables("channel") {
                let cname = ch.string("name") ?? ""
                if !isPlainName(cname) { ch.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
                if !channelNames.insert(cname).inserted { ch.error("name", "channel '\(cname)' is defined more than once in device '\(name)'") }
                var table = RegisterTable(rawValue: ch.string("table") ?? "") ?? .holding
                var address = Int(ch.int("address") ?? 0)
                if let reference = ch.int("register") {
                    if ch.has("table") || ch.has("address") {
                        ch.error("register", "give either `register` or `table` and `address`, not both")
                    } else if let (t, a) = Self.reference(Int(reference)) {
                        (table, address) = (t, a)
                    } else {
                        ch.error("register", "\(reference) is not a register reference number (40001-49999, 30001-39999, 10001-19999, 1-9999, or the 6-digit forms)")
                    }
                } else if !ch.has("table") || !ch.has("address") {
                    ch.error(nil, "a channel needs `table` and `address`, or `register`")
                }
                let type: ValueType
                if let t = ch.string("type").flatMap(ValueType.init(rawValue:)) {
                    type = t
                } else {
                    type = table.isBitTable ? .bool : .uint16
                }
                if table.isBitTable && type != .bool {
                    ch.error("type", "a \(table.rawValue) is a single bit: type must be bool")
                } else if !table.isBitTable && type == .bool {
                    ch.error("type", "bool is for coils and discrete inputs; for a bit of a register use an integer type")
                }
                let bit = ch.int("bit").map(Int.init)
                let length = ch.int("length").map(Int.init)
                let wordBits = ch.string("word_bits") == "32" ? 32 : 16
                if type == .bit && bit == nil { ch.error("bit", "type \"bit\" needs `bit` (0-31)") }
                if type == .bit, let bit, bit >= wordBits { ch.error("bit", "bit \(bit) is outside a \(wordBits)-bit word (set word_bits = \"32\")") }
                if type != .bit && ch.has("word_bits") { ch.error("word_bits", "`word_bits` is only for type \"bit\"") }
                if type != .bit && bit != nil { ch.error("bit", "`bit` is only for type \"bit\"") }
                if type == .string && length == nil { ch.error("length", "type \"string\" needs `length` (registers)") }
                if type != .string && length != nil { ch.error("length", "`length` is only for type \"string\"") }
                let config = ChannelConfig(
                    id: ChannelID(cname), table: table, address: address, type: type,
                    wordOrder: WordOrder(rawValue: ch.string("word_order") ?? "ABCD") ?? .abcd,
                    scale: ch.double("scale") ?? 1, offset: ch.double("offset") ?? 0,
                    unit: ch.string("unit").flatMap(Unit.init(rawValue:)),
                    sentinels: Set(ch.ints("sentinels") ?? []), bit: bit, wordBits: wordBits, length: length)
                if address + config.registerCount > 65536 {
                    ch.error("address", "\(type.rawValue) at address \(address) runs past the last address 65535")
                }
                // Channels may share registers only as bits of one status word; anything else overlapping is a
                // mistake in the map (and would make the planner read a register twice under two meanings).
                let range = config.address..<(config.address + config.registerCount)
                if let other = channels.first(where: { o in
                    o.table == config.table && o.address < range.upperBound && range.lowerBound < o.address + o.registerCount
                        && !(o.type == .bit && config.type == .bit && o.address == config.address && o.wordBits == config.wordBits)
                }) {
                    ch.error(ch.has("register") ? "register" : "address",
                             "overlaps channel '\(other.id)' (\(other.table.rawValue) \(other.address)...\(other.address + other.registerCount - 1)); only bit channels of the same status word may share registers")
                }
                channels.append(config)
                if table.isBitTable && !(ch.ints("sentinels") ?? []).isEmpty {
                    ch.error("sentinels", "a \(table.rawValue) is a single bit: it has no sentinel values")
                }
            }
            let interval = dev.duration("poll_interval") ?? .seconds(1)
            let backoffMax = dev.duration("backoff_max") ?? .seconds(60)
            if backoffMax < interval { dev.error("backoff_max", "must not be shorter than poll_interval") }
            devices.append(DeviceConfig(
                id: DeviceID(name), bus: bus, unitID: UInt8(clamping: dev.int("unit_id") ?? 1),
                pollInterval: interval, channels: channels, backoffMax: max(backoffMax, interval),
                retries: Int(dev.int("retries") ?? 1)))
        }
        return AcquisitionConfig(buses: buses, devices: devices)
    }
}
