import Acquisition
import KilnTallyCore
import ModbusKit

/// A scripted simulation (`kilntally simulate --scenario FILE`): which profile devices to serve, where, and what
/// they do. Checked by the same loader as the daemon's config, so a mistake names file, line and key.
public struct Scenario: Sendable {
    public struct Device: Sendable {
        public var name: String
        public var profile: String
        public var host: String
        public var port: Int
        public var channels: [ChannelConfig]
        public var parameters: ProfileDeviceSimulator.Parameters
        /// The plant parameters the daemon's config must add to the profile (max_rate, zero_band, …).
        public var plantParameters: [ChannelID: [String]]
        /// For a device served on a serial line: the device the daemon reads from.
        public var rtuClient: String?
    }

    public var seed: UInt64
    public var devices: [Device]

    public static var schema: ConfigSchema {
        var s = ConfigSchema()
        s.register(contentsOf: [
            ConfigKey("seed", .integer(min: 0), default: .integer(1), doc: "Seed of every random choice (truck weights, noise): the same seed gives the same run."),
            ConfigKey("update_interval", .duration, default: .string("100ms"), doc: "How often the registers move."),
            ConfigKey("profile_dirs", .array(.string), default: .array([]), doc: "User profile directories, searched before the built-in profiles."),
            ConfigKey("device", .arrayOfTables(ConfigTable([
                ConfigKey("name", .string, required: true, doc: "Device name (also used in the daemon config printed by --print-config)."),
                ConfigKey("profile", .string, required: true, doc: "The device profile whose registers are served."),
                ConfigKey("listen", .string, default: .string("127.0.0.1:0"), doc: "HOST:PORT to serve Modbus TCP on; port 0 picks a free one (printed)."),
                ConfigKey("rtu", .string, doc: "Serve Modbus RTU on this serial device instead of TCP (e.g. one end of a socat pty pair)."),
                ConfigKey("rtu_client", .string, doc: "With `rtu`: the device the daemon reads from (the pty pair's other end), for --write-config."),
                ConfigKey("baud", .integer(min: 300, max: 1_000_000), default: .integer(9600), doc: "With `rtu`: baud rate."),
                ConfigKey("parity", .oneOf(["none", "even", "odd"]), default: .string("even"), doc: "With `rtu`: parity."),
                ConfigKey("unit_id", .integer(min: 1, max: 247), default: .integer(1), doc: "With `rtu`: the unit id served (others get silence, as on a real line)."),
                ConfigKey("trucks", .integer(min: 0, max: 10_000), default: .integer(0), doc: "Weighbridge: this many trucks made up from the seed (gross 20-40 t, tare 12-16 t)."),
                ConfigKey("truck_every", .duration, default: .string("40s"), doc: "Weighbridge: mean time between made-up trucks."),
                ConfigKey("outbound_after", .duration, default: .string("30s"), doc: "Weighbridge: time from a made-up truck's inbound pass to its outbound pass."),
                ConfigKey("division", .integer(min: 1, max: 1000), default: .integer(20), doc: "Weighbridge: the scale division, kg."),
                ConfigKey("first_ticket", .integer(min: 1), default: .integer(1), doc: "Weighbridge: the first ticket number."),
                ConfigKey("truck", .arrayOfTables(ConfigTable([
                    ConfigKey("vehicle", .string, required: true, doc: "Plate or fleet number."),
                    ConfigKey("arrive", .durationRange(min: .zero), required: true, doc: "When the loaded truck drives on, from the start."),
                    ConfigKey("gross", .integer(min: 0, max: 200_000), required: true, doc: "Loaded weight, kg."),
                    ConfigKey("tare", .integer(min: 0, max: 200_000), required: true, doc: "Empty weight, kg."),
                    ConfigKey("outbound_after", .duration, default: .string("30s"), doc: "When the empty truck comes back, after arriving."),
                ])), doc: "Weighbridge: scripted trucks (besides the made-up ones)."),
                ConfigKey("mean_rate", .float(min: 0), default: .float(30), doc: "Feeder: mean rate, t/h."),
                ConfigKey("swing", .float(min: 0), default: .float(5), doc: "Feeder: amplitude of the rate's slow wave, t/h."),
                ConfigKey("period", .duration, default: .string("60s"), doc: "Feeder: period of the wave."),
                ConfigKey("noise", .float(min: 0, max: 1), default: .float(0.02), doc: "Feeder: relative noise on the rate (0.02 = ±2 %)."),
                ConfigKey("total_start", .float(min: 0), default: .float(1234.567), doc: "Feeder: totalizers' start value in their unit; close to the rollover (4294967 t for a BW500) to watch one roll over."),
                ConfigKey("belt_speed", .float(min: 0), default: .float(1.2), doc: "Feeder: belt speed, m/s (for channels in m/s and the belt load in kg/m)."),
                ConfigKey("line_speed", .integer(min: 300, max: 1_000_000), doc: "Delay each reply by its wire time at this baud rate (RTU timing on TCP)."),
                ConfigKey("fault", .arrayOfTables(ConfigTable([
                    ConfigKey("after", .durationRange(min: .zero), required: true, doc: "When the fault starts, from the start of the run."),
                    ConfigKey("duration", .duration, required: true, doc: "How long it lasts."),
                    ConfigKey("kind", .oneOf(["timeout", "exception", "drop", "garbage"]), required: true, doc: "`timeout`: no answer; `exception`: a Modbus exception (`code`); `drop`: the TCP connection is closed on each request; `garbage`: bytes that are not a Modbus answer."),
                    ConfigKey("code", .integer(min: 1, max: 11), default: .integer(6), doc: "For kind = \"exception\": the code (2 illegal data address, 6 slave device busy, …)."),
                ])), doc: "Faults injected at given times (the request log shows what the poller did about them)."),
            ])), required: true, doc: "The simulated devices, each on its own TCP port."),
        ])
        return s
    }

    public static func load(file: String) throws(ConfigErrors) -> Scenario {
        let document = try ConfigLoader(schema: schema).load(file: file)
        return try decode(document)
    }

    public static func load(text: String, file: String) throws(ConfigErrors) -> Scenario {
        try decode(try ConfigLoader(schema: schema).load(text: text, file: file))
    }

    static func decode(_ document: ConfigDocument) throws(ConfigErrors) -> Scenario {
        let diagnostics = ConfigDiagnostics(document: document)
        let root = ConfigReader(document: document, diagnostics: diagnostics)
        let seed = UInt64(root.int("seed") ?? 1)
        let library = ProfileLibrary(userDirectories: root.strings("profile_dirs") ?? [])
        var used: [String: DeviceProfile?] = [:]
        var devices: [Device] = []
        for (n, dev) in root.tables("device").enumerated() {
            let name = dev.string("name") ?? ""
            if !isPlainName(name) { dev.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            let listen = dev.string("listen") ?? "127.0.0.1:0"
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                  (0...65535).contains(port) else {
                dev.error("listen", "must be HOST:PORT, e.g. 127.0.0.1:1502 (port 0 picks a free one)")
                continue
            }
            guard let profileName = dev.string("profile"),
                  let profile = library.load(profileName, diagnostics: diagnostics, at: dev, used: &used) else { continue }
            var p = ProfileDeviceSimulator.Parameters()
            p.seed = seed &+ UInt64(n)
            p.updateInterval = root.duration("update_interval") ?? .milliseconds(100)
            p.divisionKilograms = Int(dev.int("division") ?? 20)
            p.firstTicket = UInt64(dev.int("first_ticket") ?? 1)
            p.trucks = dev.tables("truck").map { t in
                WeighbridgeModel.Truck(vehicle: t.string("vehicle") ?? "", arrive: t.duration("arrive") ?? .zero,
                                       grossKilograms: Int(t.int("gross") ?? 0), tareKilograms: Int(t.int("tare") ?? 0),
                                       outboundAfter: t.duration("outbound_after") ?? .seconds(30))
            }
            let madeUp = Int(dev.int("trucks") ?? 0)
            if madeUp > 0 {
                p.trucks += WeighbridgeModel.randomTrucks(count: madeUp, every: dev.duration("truck_every") ?? .seconds(40),
                                                          outboundAfter: dev.duration("outbound_after") ?? .seconds(30),
                                                          seed: p.seed)
            }
            p.feeder = FeederModel(meanTonnesPerHour: dev.double("mean_rate") ?? 30, swingTonnesPerHour: dev.double("swing") ?? 5,
                                   period: dev.duration("period") ?? .seconds(60), noise: dev.double("noise") ?? 0.02)
            p.totalStart = dev.double("total_start") ?? 1234.567
            p.beltSpeed = dev.double("belt_speed") ?? 1.2
            if profile.name == "siemens-bw500" { p.fixed["device_id"] = 2 }
            p.lineSpeed = dev.int("line_speed").map { LineSpeed(baud: Int($0)) }
            if let rtu = dev.string("rtu") {
                let parity: ModbusParity = switch dev.string("parity") {
                case "none": .none
                case "odd": .odd
                default: .even
                }
                p.rtu = .init(device: rtu, baud: Int(dev.int("baud") ?? 9600), parity: parity, unit: UInt8(dev.int("unit_id") ?? 1))
                if !dev.has("rtu_client") { dev.error("rtu_client", "with `rtu`, give the device the daemon reads from (the other end of the pty pair)") }
            } else {
                for key in ["rtu_client", "baud", "parity", "unit_id"] where dev.has(key) {
                    dev.error(key, "`\(key)` is only for a device served on a serial line (`rtu`)")
                }
            }
            p.faults = dev.tables("fault").map { f in
                let fault: ModbusFault = switch f.string("kind") {
                case "exception": .exception(UInt8(f.int("code") ?? 6))
                case "drop": .dropConnection
                case "garbage": .garbage
                default: .noReply
                }
                return .init(start: f.duration("after") ?? .zero, duration: f.duration("duration") ?? .seconds(1), fault: fault)
            }
            var device = Device(name: name, profile: profile.name, host: String(listen[..<colon]), port: port,
                                channels: profile.channels, parameters: p, plantParameters: profile.plantParameters,
                                rtuClient: dev.string("rtu_client"))
            // The channels with every role complete, exactly as the daemon will see them with the config this
            // device prints (the profile alone leaves the plant's parameters, and so some roles, open).
            if let full = try? Self.daemonView(of: device, profileDirectories: library.userDirectories) {
                device.channels = full
            }
            devices.append(device)
        }
        try diagnostics.finish()
        return Scenario(seed: seed, devices: devices)
    }
}

extension Scenario {
    static func daemonView(of device: Device, profileDirectories: [String]) throws(ConfigErrors) -> [ChannelConfig] {
        let dirs = profileDirectories.map { "\"\($0)\"" }.joined(separator: ", ")
        let text = "[profiles]\ndirs = [\(dirs)]\n" + device.daemonConfig(port: 1)
        return try AcquisitionConfig.load(text: text, file: "(simulated \(device.name))").devices.first?.channels ?? device.channels
    }
}

extension Scenario.Device {
    /// The `[[bus]]` and `[[device]]` sections of a daemon config that polls this device on `port`, with plausible
    /// values for the plant parameters its profile leaves open.
    public func daemonConfig(port: Int, pollInterval: String = "500ms") -> String {
        var text: String
        if let rtu = parameters.rtu {
            let parity = switch rtu.parity {
            case .none: "none"
            case .odd: "odd"
            case .even: "even"
            }
            text = """
                [[bus]]
                name = "sim-\(name)"
                kind = "rtu"
                device = "\(rtuClient ?? rtu.device)"
                baud = \(rtu.baud)
                parity = "\(parity)"
                response_timeout = "500ms"

                [[device]]
                name = "\(name)"
                bus = "sim-\(name)"
                unit_id = \(rtu.unit)
                poll_interval = "\(pollInterval)"
                profile = "\(profile)"

                """
        } else {
            text = """
                [[bus]]
                name = "sim-\(name)"
                kind = "tcp"
                host = "\(host == "0.0.0.0" ? "127.0.0.1" : host)"
                port = \(port)
                response_timeout = "500ms"

                [[device]]
                name = "\(name)"
                bus = "sim-\(name)"
                poll_interval = "\(pollInterval)"
                profile = "\(profile)"

                """
        }
        for (channel, params) in plantParameters.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            text += "  [[device.channel]]\n  name = \"\(channel)\"\n"
            for p in params {
                switch p {
                case "zero_band": text += "  zero_band = \(2 * parameters.divisionKilograms)\n"
                case "max_rate": text += "  max_rate = \(max(1, (parameters.feeder.meanTonnesPerHour + parameters.feeder.swingTonnesPerHour) * 2))\n"
                default: text += "  tonnes_per_unit = 1.0\n"
                }
            }
            text += "\n"
        }
        return text
    }
}
