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

public struct AcquisitionConfig: Sendable, Hashable {
    public var buses: [BusConfig]
    public var devices: [DeviceConfig]
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
        }, uniquingKeysWith: { a, _ in a })
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

        let library = ProfileLibrary(userDirectories: root.table("profiles")?.strings("dirs") ?? [])
        var used: [String: DeviceProfile?] = [:]
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
            let interval = dev.duration("poll_interval") ?? .seconds(1)
            let own = dev.tables("channel")
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
        return AcquisitionConfig(buses: buses, devices: devices, profiles: profiles)
    }
}
