import KilnTallyCore
import ModbusKit
import SerialScale

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
    /// What the channel means to the tally, if anything.
    public var role: ChannelRole? = nil

    public init(id: ChannelID, table: RegisterTable, address: Int, type: ValueType, wordOrder: WordOrder = .abcd,
                scale: Double = 1, offset: Double = 0, unit: Unit? = nil, sentinels: Set<Int64> = [],
                bit: Int? = nil, wordBits: Int = 16, length: Int? = nil, role: ChannelRole? = nil) {
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
        self.role = role
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
    /// The profile the channels came from, if any.
    public var profile: String? = nil

    /// The first channel with this role.
    public func channel(withRole name: ChannelRole.Name) -> ChannelConfig? {
        channels.first { $0.role.map(ChannelRole.Name.init) == name }
    }
}

/// A serial line on which an indicator streams ASCII frames (`kind = "serial_stream"`): read only, never written.
public struct StreamBusConfig: Sendable, Hashable {
    public var name: String
    public var device: String
    public var settings: SerialPort.Settings
    /// No frame for this long: the indicator counts as silent (readings of quality timeout, device_down).
    public var silenceTimeout: Duration
    public var reconnectBackoffMax: Duration
    public init(name: String, device: String, settings: SerialPort.Settings, silenceTimeout: Duration, reconnectBackoffMax: Duration) {
        self.name = name
        self.device = device
        self.settings = settings
        self.silenceTimeout = silenceTimeout
        self.reconnectBackoffMax = reconnectBackoffMax
    }
}

/// The indicator on a stream bus: its protocol and the channels (by role) its frames become.
public struct StreamDeviceConfig: Sendable, Hashable {
    public var id: DeviceID
    public var bus: String
    public var scaleProtocol: ScaleProtocol
    public var checksum: Bool
    public var layout: ScaleChannelLayout
    /// The weight role's zero band, in the layout's unit.
    public var zeroBand: Double
    public init(id: DeviceID, bus: String, scaleProtocol: ScaleProtocol, checksum: Bool, layout: ScaleChannelLayout, zeroBand: Double) {
        self.id = id
        self.bus = bus
        self.scaleProtocol = scaleProtocol
        self.checksum = checksum
        self.layout = layout
        self.zeroBand = zeroBand
    }
}

public struct AcquisitionConfig: Sendable, Hashable {
    public var buses: [BusConfig]
    public var devices: [DeviceConfig]
    /// Serial ASCII stream lines and their indicators (one indicator per line).
    public var streamBuses: [StreamBusConfig] = []
    public var streamDevices: [StreamDeviceConfig] = []
    /// The profiles devices use: name, file and text (the text is part of the configuration hash).
    public var profiles: [ProfileUse] = []

    public struct ProfileUse: Sendable, Hashable {
        public var name: String
        public var file: String
        public var text: String
        public var verified: Bool
    }

    public init(buses: [BusConfig], devices: [DeviceConfig], profiles: [ProfileUse] = []) {
        self.buses = buses
        self.devices = devices
        self.profiles = profiles
    }

    public func devices(on bus: String) -> [DeviceConfig] { devices.filter { $0.bus == bus } }

    /// Every device's channels with their roles (nil: a channel without one), for the checks and setups of modules
    /// that must not depend on acquisition's types (streams, weighbridges, stocks). Built from (key, value) pairs:
    /// assigning `map[k] = nil` would drop a channel without a role.
    public var channelRoles: [DeviceID: [ChannelID: ChannelRole?]] {
        Dictionary(devices.map { d in
            (d.id, Dictionary(d.channels.map { ($0.id, $0.role) }, uniquingKeysWith: { a, _ in a }))
        } + streamDevices.map { ($0.id, $0.layout.channelRoles(zeroBand: $0.zeroBand)) }, uniquingKeysWith: { a, _ in a })
    }

    /// Loads and decodes a document holding only acquisition's sections (`[profiles]`, `[[bus]]`, `[[device]]`),
    /// e.g. the sections the simulator writes for a scenario; every problem is in the thrown errors.
    public static func load(text: String, file: String) throws(ConfigErrors) -> AcquisitionConfig {
        var schema = ConfigSchema()
        for s in configSections { schema.register(s) }
        let document = try ConfigLoader(schema: schema).load(text: text, file: file)
        let diagnostics = ConfigDiagnostics(document: document)
        let config = decode(ConfigReader(document: document, diagnostics: diagnostics))
        try diagnostics.finish()
        return config
    }
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
                ConfigKey("kind", .oneOf(["tcp", "rtu", "serial_stream"]), required: true, doc: "`tcp` for Modbus TCP, `rtu` for Modbus RTU on a serial line, `serial_stream` for a weighbridge indicator that streams ASCII frames on a serial line (Toledo continuous, Yaohua tF0, XK3190-A12; read only: kilntally never sends it a byte). See docs/SERIAL-SCALES.md."),
                ConfigKey("silence_timeout", .duration, default: .string("3s"), doc: "serial_stream: no frame for this long and the indicator counts as silent (its readings get quality timeout, and a device_down event)."),
                ConfigKey("host", .string, doc: "TCP: host name or IP address of the device or gateway (required for kind = \"tcp\")."),
                ConfigKey("port", .integer(min: 1, max: 65535), default: .integer(502), doc: "TCP: port."),
                ConfigKey("device", .string, doc: "RTU and serial_stream: serial device path, e.g. /dev/ttyUSB0 (required for those kinds)."),
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
                ConfigKey("protocol", .oneOf(ScaleProtocol.allCases.map(\.rawValue)), doc: "On a serial_stream bus (required there): the indicator's frame format, toledo_continuous, yaohua_tf0 or xk3190_a12. Its channels are built in (weight, and motion/net/over_range/under_range where the format has them); give the weight's `zero_band` with a `[[device.channel]]` named `weight`."),
                ConfigKey("unit", .oneOf(["kg", "t"]), default: .string("kg"), doc: "serial_stream: the unit of the weight readings (frames in other units are converted exactly); for yaohua_tf0, whose frames carry no unit, also the indicator's unit."),
                ConfigKey("checksum", .bool, default: .bool(false), doc: "serial_stream, toledo_continuous: the indicator appends the checksum character; frames whose checksum does not match are counted and dropped."),
                ConfigKey("profile", .string, doc: "A device profile (built-in, or a `<name>.toml` in a `[profiles] dirs` directory) whose channels the device has; `kilntally profiles list` shows them. `[[device.channel]]` tables add channels, or change a profile channel's keys when they carry its name."),
                ConfigKey("channel", .arrayOfTables(ChannelConfig.configTable), doc: "The values read from the device (besides its profile's, if any)."),
            ])), doc: "Modbus devices and the channels read from each."),
            ConfigKey("profiles", .table(ConfigTable([
                ConfigKey("dirs", .array(.string), default: .array([.string("/etc/kilntally/profiles")]), doc: "Directories of user device profiles (`<name>.toml`), searched in order before the built-in ones; a user profile with a built-in's name replaces it."),
            ])), default: .table([:]), doc: "Where device profiles are found."),
        ]
    }

    /// Builds the acquisition config from a validated document; semantic errors go to the reader's diagnostics.
    public static func decode(_ root: ConfigReader) -> AcquisitionConfig {
        var buses: [BusConfig] = []
        var streamBuses: [StreamBusConfig] = []
        var busNames = Set<String>()
        for bus in root.tables("bus") {
            let name = bus.string("name") ?? ""
            if !isPlainName(name) { bus.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !busNames.insert(name).inserted { bus.error("name", "bus '\(name)' is defined more than once") }
            let transport: ModbusTransport
            let parity: ModbusParity = switch bus.string("parity") {
            case "none": .none
            case "odd": .odd
            default: .even
            }
            switch bus.string("kind") {
            case "serial_stream":
                guard let device = bus.string("device") else {
                    bus.error(nil, "a serial_stream bus needs `device` (the serial port, e.g. /dev/ttyUSB0)")
                    continue
                }
                let settings = SerialPort.Settings(baud: Int(bus.int("baud") ?? 9600), parity: parity,
                                                   dataBits: Int(bus.int("data_bits") ?? 8), stopBits: Int(bus.int("stop_bits") ?? 1))
                if !SerialPort.Settings.isSupported(baud: settings.baud) { bus.error("baud", "\(settings.baud) baud is not a speed the serial driver supports") }
                streamBuses.append(StreamBusConfig(name: name, device: device, settings: settings,
                                                   silenceTimeout: bus.duration("silence_timeout") ?? .seconds(3),
                                                   reconnectBackoffMax: bus.duration("reconnect_backoff_max") ?? .seconds(30)))
                continue
            case "rtu":
                guard let device = bus.string("device") else {
                    bus.error(nil, "an rtu bus needs `device` (the serial port, e.g. /dev/ttyUSB0)")
                    continue
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

        let library = ProfileLibrary(userDirectories: root.table("profiles")?.strings("dirs") ?? [])
        var used: [String: DeviceProfile?] = [:]
        var devices: [DeviceConfig] = []
        var streamDevices: [StreamDeviceConfig] = []
        var deviceNames = Set<String>()
        for dev in root.tables("device") {
            let name = dev.string("name") ?? ""
            if !isPlainName(name) { dev.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !deviceNames.insert(name).inserted { dev.error("name", "device '\(name)' is defined more than once") }
            let bus = dev.string("bus") ?? ""
            if !busNames.contains(bus) {
                dev.error("bus", "no [[bus]] named '\(bus)'" + (busNames.isEmpty ? " (no buses are defined)" : "; defined: \(busNames.sorted().joined(separator: ", "))"))
            }
            let own = dev.tables("channel")
            if streamBuses.contains(where: { $0.name == bus }) || dev.string("protocol") != nil {
                if let d = decodeStreamDevice(dev, name: name, bus: bus, streamBuses: streamBuses, own: own) {
                    if let other = streamDevices.first(where: { $0.bus == bus }) {
                        dev.error("bus", "serial_stream bus '\(bus)' already has an indicator (\(other.id)): one indicator per line")
                    } else {
                        streamDevices.append(d)
                    }
                }
                continue
            }
            let interval = dev.duration("poll_interval") ?? .seconds(1)
            var items: [(ConfigReader, ChannelConfig.MissingReport)] = []
            let profileName = dev.string("profile")
            if let profileName {
                if let profile = library.load(profileName, diagnostics: root.diagnostics, at: dev, used: &used) {
                    for base in profile.channelTables {
                        if let mine = own.first(where: { $0.string("name") == ChannelConfig.name(of: base) }) {
                            items.append((mine.overlaying(base), .here))
                        } else {
                            items.append((dev.reading(base, schema: ChannelConfig.configTable, reportingAt: "profile"),
                                          .profile(dev, profileName)))
                        }
                    }
                }
            }
            let profileNames = Set(items.compactMap { $0.0.string("name") })
            items += own.filter { !profileNames.contains($0.string("name") ?? "") }.map { ($0, .here) }
            if items.isEmpty && profileName == nil {
                dev.error(nil, "a device needs `profile` or at least one [[device.channel]]")
            }
            let channels = decodeChannels(items, device: name, pollInterval: interval).map(\.channel)
            let backoffMax = dev.duration("backoff_max") ?? .seconds(60)
            if backoffMax < interval { dev.error("backoff_max", "must not be shorter than poll_interval") }
            devices.append(DeviceConfig(
                id: DeviceID(name), bus: bus, unitID: UInt8(clamping: dev.int("unit_id") ?? 1),
                pollInterval: interval, channels: channels, backoffMax: max(backoffMax, interval),
                retries: Int(dev.int("retries") ?? 1), profile: profileName))
        }
        let profiles = used.values.compactMap { $0 }.sorted { $0.name < $1.name }
            .map { ProfileUse(name: $0.name, file: $0.file, text: $0.text, verified: $0.verified) }
        var config = AcquisitionConfig(buses: buses, devices: devices, profiles: profiles)
        config.streamBuses = streamBuses
        config.streamDevices = streamDevices
        return config
    }

    /// A `[[device]]` on a serial_stream bus: its protocol, unit, checksum and the weight's zero band.
    static func decodeStreamDevice(_ dev: ConfigReader, name: String, bus: String, streamBuses: [StreamBusConfig],
                                   own: [ConfigReader]) -> StreamDeviceConfig? {
        guard streamBuses.contains(where: { $0.name == bus }) else {
            dev.error("protocol", "`protocol` is for devices on a serial_stream bus; bus '\(bus)' is not one")
            return nil
        }
        guard let p = dev.string("protocol").flatMap(ScaleProtocol.init(rawValue:)) else {
            dev.error(nil, "a device on a serial_stream bus needs `protocol` (\(ScaleProtocol.allCases.map(\.rawValue).joined(separator: ", ")))")
            return nil
        }
        for key in ["profile", "unit_id", "poll_interval", "retries", "backoff_max"] where dev.has(key) {
            dev.error(key, "a stream indicator sends on its own: `\(key)` does not apply on a serial_stream bus")
        }
        let checksum = dev.bool("checksum") ?? false
        if checksum && !p.hasOptionalChecksum { dev.error("checksum", "\(p.rawValue) frames have no optional checksum") }
        let layout = ScaleChannelLayout.builtin(for: p, unit: dev.string("unit") == "t" ? .tonne : .kilogram)
        var zeroBand: Double?
        for channel in own {
            if channel.string("name") == layout.weight.rawValue {
                zeroBand = channel.double("zero_band")
                for key in ["table", "address", "register", "type", "role"] where channel.has(key) {
                    channel.error(key, "the channels of a \(p.rawValue) indicator are built in; only the weight's `zero_band` is set here")
                }
            } else {
                channel.error("name", "a \(p.rawValue) indicator has the built-in channels \(layout.channels(zeroBand: 0).map(\.channel.rawValue).joined(separator: ", ")); only `\(layout.weight)` can be given (for its zero_band)")
            }
        }
        guard let zeroBand else {
            dev.error(nil, "give the weight's zero band: [[device.channel]] name = \"\(layout.weight)\" with zero_band (in \(layout.unit.rawValue))")
            return nil
        }
        return StreamDeviceConfig(id: DeviceID(name), bus: bus, scaleProtocol: p, checksum: checksum, layout: layout, zeroBand: zeroBand)
    }
}
