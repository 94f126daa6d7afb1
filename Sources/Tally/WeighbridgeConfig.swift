import KilnTallyCore

/// One weighbridge (truck scale) whose weighings the tally turns into tickets: which acquisition device is its
/// indicator, when a weight counts as captured, how the two weighings of a truck are paired, and which material a
/// ticket is for. Decoded from a `[[weighbridge]]` section; the indicator's channels come from the device's roles
/// (`resolveChannels(devices:)`).
public struct WeighbridgeConfig: Sendable, Hashable, Codable {
    /// How a truck is weighed.
    public enum Mode: String, Sendable, Hashable, Codable, CaseIterable {
        /// Weighed loaded and empty: the first capture opens a ticket, the second closes it.
        case twoPass = "two_pass"
        /// Weighed once; the tare is the vehicle's preset tare and the ticket closes at once.
        case onePass = "one_pass"
    }

    /// How a two-pass weighing finds the ticket its first weighing opened.
    public enum Pairing: String, Sendable, Hashable, Codable, CaseIterable {
        /// The ticket number register: a capture showing the number of an open ticket closes it, any other number
        /// opens a ticket. Right for an indicator that recalls the first weighing's number for the second (truck
        /// in/out mode). Wrong for a print counter that advances on every weighing (the FT-112's CN register in its
        /// default use, the simulator's generic weighbridge): every pass would open a ticket; use `vehicle_id` or
        /// `order` for those.
        case ticketNumber = "ticket_no"
        /// The vehicle id register (plate reader, IC card): a capture whose vehicle has an open ticket closes the
        /// oldest such ticket, otherwise it opens one.
        case vehicleID = "vehicle_id"
        /// In order: a capture closes the oldest open ticket, or opens one when none is open. Right where each truck
        /// weighs in and out before the next weighs in.
        case order
    }

    /// A fleet vehicle's stored tare (预置皮重) for one-pass weighing.
    public struct PresetTare: Sendable, Hashable, Codable {
        /// The vehicle id exactly as the indicator's vehicle register shows it (surrounding spaces and NULs
        /// trimmed).
        public var vehicle: String
        public var tare: Mass

        public init(vehicle: String, tare: Mass) {
            self.vehicle = vehicle
            self.tare = tare
        }
    }

    /// Name of the weighbridge; every ticket id starts with it. `[A-Za-z0-9_-]`.
    public var name: String
    /// The acquisition device (`[[device]]` name) that is this weighbridge's indicator.
    public var device: DeviceID
    public var mode: Mode
    /// nil: chosen from the indicator's channels (`Pairing.resolve`). Two-pass only.
    public var pairing: Pairing?
    /// A weighing is captured only above this weight.
    public var minWeight: Mass
    /// The software stability check: the weights read over the last `window` (from the last reading at or before
    /// its start) must stay within `tolerance` of each other. nil: the indicator's stable/motion bit alone.
    public var spreadCheck: SpreadCheck?
    /// The material of a ticket when the material channel is absent or shows nothing.
    public var defaultMaterial: String
    /// A channel of the device that shows the material (a code or a name), read at each capture.
    public var materialChannel: ChannelID?
    /// One-pass only: sorted by vehicle, one entry per vehicle.
    public private(set) var presetTares: [PresetTare]

    public struct SpreadCheck: Sendable, Hashable, Codable {
        public var window: Duration
        public var tolerance: Mass

        public init(window: Duration, tolerance: Mass) {
            self.window = window
            self.tolerance = tolerance
        }
    }

    public init(name: String, device: DeviceID, mode: Mode = .twoPass, pairing: Pairing? = nil,
                minWeight: Mass = Mass(kilograms: 1_000), spreadCheck: SpreadCheck? = nil,
                defaultMaterial: String, materialChannel: ChannelID? = nil, presetTares: [PresetTare] = []) {
        self.name = name
        self.device = device
        self.mode = mode
        self.pairing = pairing
        self.minWeight = minWeight
        self.spreadCheck = spreadCheck
        self.defaultMaterial = defaultMaterial
        self.materialChannel = materialChannel
        self.presetTares = []
        for preset in presetTares { setPresetTare(preset) }
    }

    /// The preset tare of a vehicle, if it has one.
    public func presetTare(for vehicle: String) -> Mass? {
        let i = presetIndex(vehicle)
        return i < presetTares.count && presetTares[i].vehicle == vehicle ? presetTares[i].tare : nil
    }

    /// Adds or replaces a vehicle's preset tare (kept sorted, so the configuration encodes the same every time).
    public mutating func setPresetTare(_ preset: PresetTare) {
        let i = presetIndex(preset.vehicle)
        if i < presetTares.count && presetTares[i].vehicle == preset.vehicle {
            presetTares[i] = preset
        } else {
            presetTares.insert(preset, at: i)
        }
    }

    private func presetIndex(_ vehicle: String) -> Int {
        var lo = 0, hi = presetTares.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if presetTares[mid].vehicle < vehicle { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

// MARK: - Channels

/// The indicator channels a weighbridge reads, found by role on its device.
public struct WeighbridgeChannels: Sendable, Hashable, Codable {
    /// Role `weight`.
    public var weight: ChannelID
    /// The weight role's zero band, in the weight channel's unit: at or below it the scale counts as empty.
    public var zeroBand: Double
    /// Role `stable` (true = stable).
    public var stable: ChannelID?
    /// Role `motion` (true = in motion).
    public var motion: ChannelID?
    public var overRange: ChannelID?
    public var underRange: ChannelID?
    /// Role `net` (true = the indicator shows net weight).
    public var net: ChannelID?
    public var ticketNumber: ChannelID?
    public var vehicle: ChannelID?
    /// The configured `material_channel`.
    public var material: ChannelID?

    public init(weight: ChannelID, zeroBand: Double, stable: ChannelID? = nil, motion: ChannelID? = nil,
                overRange: ChannelID? = nil, underRange: ChannelID? = nil, net: ChannelID? = nil,
                ticketNumber: ChannelID? = nil, vehicle: ChannelID? = nil, material: ChannelID? = nil) {
        self.weight = weight
        self.zeroBand = zeroBand
        self.stable = stable
        self.motion = motion
        self.overRange = overRange
        self.underRange = underRange
        self.net = net
        self.ticketNumber = ticketNumber
        self.vehicle = vehicle
        self.material = material
    }

    /// The status bits a capture depends on, with their role names, in a fixed order.
    var statusBits: [(role: ChannelRole.Name, channel: ChannelID)] {
        let all: [(ChannelRole.Name, ChannelID?)] = [
            (.stable, stable), (.motion, motion), (.overRange, overRange), (.underRange, underRange), (.net, net),
        ]
        return all.compactMap { name, channel in channel.map { (name, $0) } }
    }
}

extension WeighbridgeConfig {
    /// A problem that keeps a weighbridge from working with its device, with the key of its `[[weighbridge]]`
    /// table it is about (nil: the table as a whole).
    public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        public var key: String?
        public var message: String
        public init(key: String?, _ message: String) {
            self.key = key
            self.message = message
        }
        public var description: String { (key.map { "\($0): " } ?? "") + message }
    }

    /// The pairing in force: the configured one, or else by vehicle id when the device has a vehicle channel, else
    /// in order. Never by ticket number unless configured: the indicators we ship profiles for (FT-112's CN, the
    /// generic map the simulator serves) count prints, so their number advances on every weighing and would pair
    /// nothing — a plant whose indicator keeps one number per transaction says `pair_by = "ticket_no"`.
    public func resolvedPairing(_ channels: WeighbridgeChannels) -> Pairing {
        if let pairing { return pairing }
        if channels.vehicle != nil { return .vehicleID }
        return .order
    }

    /// Finds the weighbridge's channels on its device and checks that they fit the configuration. `devices` maps
    /// each acquisition device to all its channels with their roles (nil: a channel without a role), so the
    /// daemon can check the configuration without this module knowing acquisition's types.
    public func resolveChannels(devices: [DeviceID: [ChannelID: ChannelRole?]]) -> Result<WeighbridgeChannels, Problems> {
        guard let channels = devices[device] else {
            let known = devices.keys.map(\.rawValue).sorted()
            return .failure(Problems([Problem(key: "device", "no [[device]] named '\(device)'"
                + (known.isEmpty ? " (no devices are defined)" : "; defined: \(known.joined(separator: ", "))"))]))
        }
        // Sorted, so a device with two channels of a role (acquisition rejects that) resolves the same every time.
        let byRole = channels.compactMap { id, role in role.map { (id, $0) } }.sorted { $0.0.rawValue < $1.0.rawValue }
        func first(_ name: ChannelRole.Name) -> ChannelID? { byRole.first { ChannelRole.Name($0.1) == name }?.0 }
        var problems: [Problem] = []
        let weight = byRole.first { ChannelRole.Name($0.1) == .weight }
        guard let weight, case .weight(let zeroBand) = weight.1 else {
            return .failure(Problems([Problem(key: "device", "device '\(device)' has no channel with role `weight`")]))
        }
        var resolved = WeighbridgeChannels(
            weight: weight.0, zeroBand: zeroBand, stable: first(.stable), motion: first(.motion),
            overRange: first(.overRange), underRange: first(.underRange), net: first(.net),
            ticketNumber: first(.ticketNumber), vehicle: first(.vehicleID), material: materialChannel)
        if resolved.stable == nil && resolved.motion == nil && spreadCheck == nil {
            problems.append(Problem(key: nil, "device '\(device)' has no `stable` or `motion` channel: set "
                + "`stable_window` and `stable_tolerance` so a weight can count as stable"))
        }
        if let m = materialChannel, !channels.keys.contains(m) {
            problems.append(Problem(key: "material_channel", "device '\(device)' has no channel '\(m)'"))
            resolved.material = nil
        }
        switch mode {
        case .onePass:
            if resolved.vehicle == nil {
                problems.append(Problem(key: "mode", "one_pass looks up preset tares by vehicle, but device '\(device)' "
                    + "has no channel with role `vehicle_id`"))
            }
        case .twoPass:
            if pairing == .ticketNumber && resolved.ticketNumber == nil {
                problems.append(Problem(key: "pair_by", "device '\(device)' has no channel with role `ticket_no`"))
            }
            if pairing == .vehicleID && resolved.vehicle == nil {
                problems.append(Problem(key: "pair_by", "device '\(device)' has no channel with role `vehicle_id`"))
            }
        }
        return problems.isEmpty ? .success(resolved) : .failure(Problems(problems))
    }

    public struct Problems: Error, Sendable, Hashable, CustomStringConvertible {
        public var all: [Problem]
        public init(_ all: [Problem]) { self.all = all }
        public var description: String { all.map(\.description).joined(separator: "; ") }
    }

    /// Cross-checks every weighbridge of `root` (decoded into `configs`, in file order) against the devices,
    /// recording problems at `weighbridge[i].<key>` with their lines: what `config check` and the daemon run once
    /// acquisition has decoded its devices.
    public static func validate(_ configs: [WeighbridgeConfig], devices: [DeviceID: [ChannelID: ChannelRole?]],
                                root: ConfigReader) {
        let tables = root.tables(configSection.name)
        for (config, table) in zip(configs, tables) {
            if case .failure(let problems) = config.resolveChannels(devices: devices) {
                for p in problems.all { table.error(p.key, p.message) }
            }
        }
    }
}

// MARK: - Configuration section

extension WeighbridgeConfig {
    /// The `[[weighbridge]]` section this module registers with the core config loader.
    public static var configSection: ConfigKey {
        ConfigKey("weighbridge", .arrayOfTables(ConfigTable([
            ConfigKey("name", .string, required: true, doc: "Name of the weighbridge; every ticket id starts with it (`<name>-<running number>`); [A-Za-z0-9_-]."),
            ConfigKey("device", .string, required: true, doc: "The `[[device]]` that is this weighbridge's indicator. It needs a channel with role `weight` (with `zero_band`: at or below it the scale counts as empty, which ends a pass) and one with role `stable` or `motion` unless `stable_window` and `stable_tolerance` are set; `over_range`, `under_range`, `net`, `ticket_no` and `vehicle_id` channels are used when it has them."),
            ConfigKey("mode", .oneOf(Mode.allCases.map(\.rawValue)), default: .string(Mode.twoPass.rawValue), doc: "`two_pass`: each truck is weighed on the way in and on the way out; the first capture opens a ticket and the second closes it, the heavier weighing is the gross and the lighter the tare (a truck that comes in empty and leaves loaded — a pickup — gives a ticket with direction `dispatched`, not a receipt). `one_pass`: each truck is weighed once and its tare is its preset tare (`preset_tares`); a truck without one gives a `weighing_rejected` event and no ticket."),
            ConfigKey("pair_by", .oneOf(["auto"] + Pairing.allCases.map(\.rawValue)), default: .string("auto"), doc: "two_pass: how the second weighing finds the ticket the first opened. `ticket_no`: the indicator's ticket number register shows the same number on both weighings (a capture with a number no open ticket has opens a ticket); `vehicle_id`: the vehicle register; `order`: each capture closes the oldest open ticket, or opens one when none is open. `auto`: `vehicle_id` when the device has a `vehicle_id` channel, else `order` — never `ticket_no` unless asked for, because the ticket registers of the indicators kilntally ships profiles for (Flintec FT-112 CN, the generic map the simulator serves) are print counters that advance on every weighing. With `ticket_no` or `vehicle_id`, a stable weight is captured only once the register shows a value."),
            ConfigKey("min_weight", .float(min: 0), default: .integer(1_000), doc: "kg. A weighing is captured only above this weight; a pass that never goes above it (a car, a person) is ignored."),
            ConfigKey("stable_window", .duration, doc: "The software stability check, with `stable_tolerance`: a weight is captured only when the weights read over this window (counted from the last reading at or before its start, all good and on the scale) spread by at most the tolerance. Absent: the indicator's stable/motion bit alone decides."),
            ConfigKey("stable_tolerance", .float(min: 0), doc: "kg: the largest spread (highest minus lowest weight) over `stable_window` that counts as stable. Set both or neither."),
            ConfigKey("default_material", .string, required: true, doc: "The material (waste type) of a ticket when `material_channel` is absent or shows nothing; a ticket's material can be corrected later (`kilntally ticket set-material`)."),
            ConfigKey("material_channel", .string, doc: "A channel of the device that shows the material (a code or a name, as text), read at each capture; the first weighing's value wins, then the second's, then `default_material`."),
            ConfigKey("preset_tares", .arrayOfTables(ConfigTable([
                ConfigKey("vehicle", .string, required: true, doc: "The vehicle id exactly as the indicator's `vehicle_id` channel shows it."),
                ConfigKey("tare", .float(min: 0), required: true, doc: "kg: the vehicle's stored empty weight (greater than 0)."),
            ])), doc: "one_pass: the fleet's preset tares, e.g. `preset_tares = [{ vehicle = \"ZJ-A12345\", tare = 12260 }]` or `[[weighbridge.preset_tares]]` tables. A capture no heavier than the preset tare gives a `weighing_rejected` event and no ticket."),
        ])), doc: "Weighbridges (truck scales) whose weighings become tickets. Each ticket belongs to the shift in which it closes (its second weighing in two_pass, its only one in one_pass).")
    }

    /// Builds the weighbridges of a validated document; semantic errors go to the reader's diagnostics. Device
    /// and channel checks need acquisition's devices: `validate(_:devices:root:)`.
    public static func decode(_ root: ConfigReader) -> [WeighbridgeConfig] {
        var configs: [WeighbridgeConfig] = []
        var names = Set<String>()
        for table in root.tables(configSection.name) {
            let name = table.string("name") ?? ""
            if !isPlainName(name) { table.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !names.insert(name).inserted { table.error("name", "weighbridge '\(name)' is defined more than once") }
            let device = table.string("device") ?? ""
            if !isPlainName(device) { table.error("device", "must be a device name: A-Z a-z 0-9 _ -") }
            let mode = table.value("mode", as: Mode.self) ?? .twoPass
            let pairText = table.string("pair_by") ?? "auto"
            let pairing = Pairing(rawValue: pairText)
            if mode == .onePass && table.has("pair_by") {
                table.error("pair_by", "applies to two_pass only (one_pass closes each ticket at its only weighing)")
            }
            let minWeight = kilograms(table, "min_weight") ?? Mass(kilograms: 1_000)
            if minWeight <= .zero { table.error("min_weight", "must be greater than 0 kg") }
            var spreadCheck: SpreadCheck?
            switch (table.duration("stable_window"), kilograms(table, "stable_tolerance")) {
            case (let window?, let tolerance?): spreadCheck = SpreadCheck(window: window, tolerance: tolerance)
            case (nil, nil): spreadCheck = nil
            case (nil, _?): table.error("stable_tolerance", "needs stable_window as well (set both or neither)")
            case (_?, nil): table.error("stable_window", "needs stable_tolerance as well (set both or neither)")
            }
            let material = table.string("default_material") ?? ""
            if material.isEmpty { table.error("default_material", "must not be empty") }
            let materialChannel = table.string("material_channel")
            if let materialChannel, !isPlainName(materialChannel) {
                table.error("material_channel", "must be a channel name: A-Z a-z 0-9 _ -")
            }
            var config = WeighbridgeConfig(
                name: name, device: DeviceID(device), mode: mode, pairing: pairing, minWeight: minWeight,
                spreadCheck: spreadCheck, defaultMaterial: material, materialChannel: materialChannel.map { ChannelID($0) })
            let presets = table.tables("preset_tares")
            if mode == .onePass && presets.isEmpty {
                table.error("preset_tares", "one_pass needs the vehicles' preset tares")
            }
            if mode == .twoPass && !presets.isEmpty {
                table.error("preset_tares", "is used by one_pass only (two_pass weighs the tare)")
            }
            for preset in presets {
                let vehicle = trimmedText(preset.string("vehicle") ?? "")
                let tare = kilograms(preset, "tare") ?? .zero
                if vehicle.isEmpty { preset.error("vehicle", "must not be empty") }
                if tare <= .zero { preset.error("tare", "must be greater than 0 kg") }
                if config.presetTare(for: vehicle) != nil {
                    preset.error("vehicle", "vehicle '\(vehicle)' has more than one preset tare")
                }
                config.setPresetTare(PresetTare(vehicle: vehicle, tare: tare))
            }
            configs.append(config)
        }
        return configs
    }

    /// A kg key as an exact mass (to the milligram).
    private static func kilograms(_ table: ConfigReader, _ key: String) -> Mass? {
        table.double(key).flatMap { Mass($0, .kilogram) }
    }
}

/// Text from a register or a file without the padding around it (spaces, NULs of a fixed-length string register).
func trimmedText(_ s: String) -> String {
    let isPadding: (Character) -> Bool = { $0.isWhitespace || $0 == "\u{0}" }
    guard let start = s.firstIndex(where: { !isPadding($0) }), let end = s.lastIndex(where: { !isPadding($0) }) else {
        return ""
    }
    return String(s[start...end])
}
