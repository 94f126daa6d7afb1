import Acquisition
import KilnTallyCore
import ModbusKit
import SerialScale

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
        /// For a stream indicator (`protocol`): how it streams, and on which line. Such a device has no profile,
        /// channels or Modbus parameters.
        public var stream: Stream? = nil
    }

    /// A simulated stream indicator (no Modbus: it writes ASCII frames on a serial line and never reads).
    public struct Stream: Sendable {
        public var parameters: ScaleStreamParameters
        /// The line the simulator writes (one end of a socat pty pair); nil: a pty of its own.
        public var line: String?
        /// The line the daemon reads (the pair's other end); nil with an own pty (its slave, known once made).
        public var client: String?
        public var settings: SerialPort.Settings
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
                ConfigKey("profile", .string, doc: "The device profile whose registers are served over Modbus. Required unless `protocol` is given."),
                ConfigKey("protocol", .oneOf(ScaleProtocol.allCases.map(\.rawValue)), doc: "Instead of a Modbus profile: a weighbridge indicator that streams ASCII frames on a serial line (`toledo_continuous`, `yaohua_tf0`, `xk3190_a12`; docs/SERIAL-SCALES.md), driven by the trucks like a Modbus weighbridge. It writes on `serial`, or on a pty of its own when `serial` is absent, and never reads."),
                ConfigKey("serial", .string, doc: "With `protocol`: the line to stream on (one end of a socat pty pair), opened exclusively. Absent: the simulator makes a pty and prints its slave (/dev/pts/N), which --write-config names."),
                ConfigKey("serial_client", .string, doc: "With `serial`: the line the daemon reads (the pty pair's other end), for --write-config."),
                ConfigKey("checksum", .bool, default: .bool(false), doc: "With protocol = \"toledo_continuous\": append the checksum byte (and --write-config says `checksum = true`)."),
                ConfigKey("unit", .oneOf(["kg", "t"]), default: .string("kg"), doc: "With `protocol`: the display's unit. Yaohua TF0 frames do not carry it; --write-config passes it to the daemon as the device's `unit`."),
                ConfigKey("decimals", .integer(min: 0, max: 4), default: .integer(0), doc: "With `protocol`: digits after the display's decimal point (e.g. unit = \"t\", decimals = 2 shows 20.00 t); the division must be a whole number of the last digit."),
                ConfigKey("frames_per_second", .float(min: 0.1, max: 100), default: .float(10), doc: "With `protocol`: frames sent per second (indicators send 10-20 at 9600 baud)."),
                ConfigKey("garbage_rate", .float(min: 0, max: 1), default: .float(0), doc: "With `protocol`: per frame, the probability that 1-8 garbage bytes go before it (bytes that never start a frame)."),
                ConfigKey("split_rate", .float(min: 0, max: 1), default: .float(0), doc: "With `protocol`: per frame, the probability that it is written in 2-3 pieces, `split_pause` apart."),
                ConfigKey("split_pause", .duration, default: .string("20ms"), doc: "With `protocol`: the pause between the pieces of a split frame."),
                ConfigKey("bad_checksum_rate", .float(min: 0, max: 1), default: .float(0), doc: "With `protocol`: per frame, the probability of a wrong checksum (toledo_continuous with `checksum`) or XOR (yaohua_tf0)."),
                ConfigKey("data_bits", .integer(min: 7, max: 8), default: .integer(8), doc: "With `protocol`: data bits of the line."),
                ConfigKey("stop_bits", .integer(min: 1, max: 2), default: .integer(1), doc: "With `protocol`: stop bits of the line."),
                ConfigKey("listen", .string, default: .string("127.0.0.1:0"), doc: "HOST:PORT to serve Modbus TCP on; port 0 picks a free one (printed)."),
                ConfigKey("rtu", .string, doc: "Serve Modbus RTU on this serial device instead of TCP (e.g. one end of a socat pty pair)."),
                ConfigKey("rtu_client", .string, doc: "With `rtu`: the device the daemon reads from (the pty pair's other end), for --write-config."),
                ConfigKey("baud", .integer(min: 300, max: 1_000_000), default: .integer(9600), doc: "With `rtu` or `protocol`: baud rate."),
                ConfigKey("parity", .oneOf(["none", "even", "odd"]), doc: "With `rtu` or `protocol`: parity. Default: even for rtu (Modbus' 8E1), none for a stream."),
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
            ])), required: true, doc: "The simulated devices, each on its own TCP port or serial line."),
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
            if dev.has("protocol") {
                if let device = decodeStream(dev, name: name, seed: seed &+ UInt64(n)) { devices.append(device) }
                continue
            }
            for key in streamKeys where dev.has(key) {
                dev.error(key, "`\(key)` is only for a stream indicator (`protocol`)")
            }
            guard dev.has("profile") else {
                dev.error(nil, "a device needs `profile` (a Modbus device) or `protocol` (a stream indicator)")
                continue
            }
            guard let profileName = dev.string("profile"),
                  let profile = library.load(profileName, diagnostics: diagnostics, at: dev, used: &used) else { continue }
            var p = ProfileDeviceSimulator.Parameters()
            p.seed = seed &+ UInt64(n)
            p.updateInterval = root.duration("update_interval") ?? .milliseconds(100)
            p.divisionKilograms = Int(dev.int("division") ?? 20)
            p.firstTicket = UInt64(dev.int("first_ticket") ?? 1)
            p.trucks = trucks(dev, seed: p.seed)
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

    /// Keys only a stream indicator has.
    static let streamKeys = ["serial", "serial_client", "checksum", "unit", "decimals", "frames_per_second", "garbage_rate",
                             "split_rate", "split_pause", "bad_checksum_rate", "data_bits", "stop_bits"]

    /// Trucks, made-up and scripted, as both kinds of weighbridge take them.
    static func trucks(_ dev: ConfigReader, seed: UInt64) -> [WeighbridgeModel.Truck] {
        var trucks = dev.tables("truck").map { t in
            WeighbridgeModel.Truck(vehicle: t.string("vehicle") ?? "", arrive: t.duration("arrive") ?? .zero,
                                   grossKilograms: Int(t.int("gross") ?? 0), tareKilograms: Int(t.int("tare") ?? 0),
                                   outboundAfter: t.duration("outbound_after") ?? .seconds(30))
        }
        let madeUp = Int(dev.int("trucks") ?? 0)
        if madeUp > 0 {
            trucks += WeighbridgeModel.randomTrucks(count: madeUp, every: dev.duration("truck_every") ?? .seconds(40),
                                                    outboundAfter: dev.duration("outbound_after") ?? .seconds(30), seed: seed)
        }
        return trucks
    }

    static func decodeStream(_ dev: ConfigReader, name: String, seed: UInt64) -> Device? {
        guard let proto = dev.string("protocol").flatMap(ScaleProtocol.init(rawValue:)) else { return nil }
        for key in ["profile", "listen", "rtu", "rtu_client", "unit_id", "line_speed", "fault", "mean_rate", "swing",
                    "period", "noise", "total_start", "belt_speed", "first_ticket"] where dev.has(key) {
            dev.error(key, "`\(key)` is for a Modbus device; a stream indicator (`protocol`) has no \(key)")
        }
        var p = ScaleStreamParameters(scaleProtocol: proto)
        p.seed = seed
        p.checksum = dev.bool("checksum") ?? false
        if p.checksum && !proto.hasOptionalChecksum {
            dev.error("checksum", "only toledo_continuous has an optional checksum (yaohua_tf0's XOR is always sent; xk3190_a12 has none)")
        }
        p.unit = dev.string("unit") == "t" ? .tonne : .kilogram
        p.decimals = Int(dev.int("decimals") ?? 0)
        p.framesPerSecond = dev.double("frames_per_second") ?? 10
        p.garbageRate = dev.double("garbage_rate") ?? 0
        p.splitRate = dev.double("split_rate") ?? 0
        p.splitPause = dev.duration("split_pause") ?? .milliseconds(20)
        p.badChecksumRate = dev.double("bad_checksum_rate") ?? 0
        p.divisionKilograms = Int(dev.int("division") ?? 20)
        p.trucks = trucks(dev, seed: seed)
        // The division must be a whole number of the display's last digit.
        let lastDigitMilligrams = (p.unit == .tonne ? 1_000_000_000 : 1_000_000) / pow10(p.decimals)
        if (p.divisionKilograms * 1_000_000) % lastDigitMilligrams != 0 {
            dev.error("decimals", "a division of \(p.divisionKilograms) kg is not a whole number of the last digit of a display in \(p.unit) with \(p.decimals) decimals")
        }
        // Six digits: the heaviest truck (with the motion noise) must fit the display.
        let heaviest = (p.trucks.map(\.grossKilograms).max() ?? 0) + 200
        if heaviest * 1_000_000 / lastDigitMilligrams > 999_999 {
            dev.error("decimals", "a display in \(p.unit) with \(p.decimals) decimals has six digits: \(heaviest) kg does not fit")
        }
        if dev.has("serial_client") && !dev.has("serial") {
            dev.error("serial_client", "is the other end of `serial`: give `serial` too (without it the simulator makes its own pty)")
        }
        if dev.has("serial") && !dev.has("serial_client") {
            dev.error("serial", "give `serial_client` too: the device the daemon reads from (the other end of the pty pair)")
        }
        let parity: ModbusParity = switch dev.string("parity") {
        case "even": .even
        case "odd": .odd
        default: .none
        }
        let settings = SerialPort.Settings(baud: Int(dev.int("baud") ?? 9600), parity: parity,
                                           dataBits: Int(dev.int("data_bits") ?? 8), stopBits: Int(dev.int("stop_bits") ?? 1))
        if SerialPort.Settings.isSupported(baud: settings.baud) == false {
            dev.error("baud", "\(settings.baud) is not a standard baud rate (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, …)")
        }
        let stream = Stream(parameters: p, line: dev.string("serial"), client: dev.string("serial_client"), settings: settings)
        return Device(name: name, profile: "", host: "", port: 0, channels: [], parameters: .init(), plantParameters: [:],
                      rtuClient: nil, stream: stream)
    }

    private static func pow10(_ n: Int) -> Int { (0..<n).reduce(1) { r, _ in r * 10 } }
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
    ///
    /// For a stream indicator: a `kind = "serial_stream"` bus on `streamDevice` (or the scenario's
    /// `serial_client`), and a device with `protocol` (its built-in channels: docs/SERIAL-SCALES.md), `unit`,
    /// `checksum` for Toledo, and the weight channel's `zero_band`; `port` and `pollInterval` do not apply.
    public func daemonConfig(port: Int, pollInterval: String = "500ms", streamDevice: String? = nil) -> String {
        if let stream { return streamConfig(stream, device: streamDevice ?? stream.client ?? stream.line ?? "") }
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

extension Scenario.Device {
    /// The daemon sections that read a stream indicator (the keys are listed in docs/SERIAL-SCALES.md).
    func streamConfig(_ stream: Scenario.Stream, device: String) -> String {
        let p = stream.parameters
        let parity = switch stream.settings.parity {
        case .none: "none"
        case .odd: "odd"
        case .even: "even"
        }
        var text = """
            [[bus]]
            name = "sim-\(name)"
            kind = "serial_stream"
            device = "\(device)"
            baud = \(stream.settings.baud)
            parity = "\(parity)"
            data_bits = \(stream.settings.dataBits)
            stop_bits = \(stream.settings.stopBits)

            [[device]]
            name = "\(name)"
            bus = "sim-\(name)"
            protocol = "\(p.scaleProtocol.rawValue)"
            unit = "\(p.unit == .tonne ? "t" : "kg")"

            """
        if p.checksum { text += "checksum = true\n" }
        // Two divisions, in the readings' unit.
        let band = p.unit == .tonne ? "\(Double(2 * p.divisionKilograms) / 1000)" : "\(2 * p.divisionKilograms)"
        let layout = ScaleChannelLayout.builtin(for: p.scaleProtocol)
        text += "  [[device.channel]]\n  name = \"\(layout.weight)\"\n  zero_band = \(band)\n\n"
        return text
    }
}
