import KilnTallyCore

extension ValueType {
    var isInteger: Bool {
        switch self {
        case .int16, .uint16, .int32, .uint32, .int64, .uint64: true
        default: false
        }
    }

    var isNumber: Bool { isInteger || self == .float32 || self == .float64 }

    /// Bits of an unsigned integer type (its counter wraps at 2^bits), nil for the others.
    var unsignedBits: Int? {
        switch self {
        case .uint16: 16
        case .uint32: 32
        case .uint64: 64
        default: nil
        }
    }
}

extension ChannelConfig {
    /// Role parameters: the plant's own figures a profile cannot know. A profile may leave them out; the device
    /// using the profile must then give them (`[[device.channel]]` with the channel's name and the parameter).
    static let plantParameters: Set<String> = ["zero_band", "max_rate", "tonnes_per_unit"]

    /// Which role each role parameter belongs to.
    static let parameterRoles: [String: [ChannelRole.Name]] = [
        "zero_band": [.weight], "modulus": [.totalizer], "resettable": [.totalizer], "max_rate": [.totalizer],
        "tonnes_per_unit": [.level, .stock], "stale_after": [.heartbeat],
    ]

    /// The keys of one channel, in a device (`[[device.channel]]`) or a profile (`[[channel]]`).
    static var configTable: ConfigTable {
        ConfigTable([
            ConfigKey("name", .string, required: true, doc: "Channel name, unique within the device; [A-Za-z0-9_-]. In a device that uses a profile, a channel with the name of a profile channel changes that channel's keys (e.g. adds `max_rate`) instead of adding a channel."),
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
            ConfigKey("role", .oneOf(ChannelRole.Name.allCases.map(\.rawValue)), doc: "What the channel means to the tally: " + ChannelRole.Name.allCases.map { "`\($0.rawValue)` \($0.summary)" }.joined(separator: "; ") + ". A device has at most one channel of each role except rate, totalizer, level and stock (`stable` and `motion` count as one)."),
            ConfigKey("zero_band", .float(min: 0), doc: "Role weight: half-width of the band around zero, in the channel's unit, inside which the scale counts as empty (a truck has left). Needed by role weight."),
            ConfigKey("max_rate", .float(min: 0.001), doc: "Role totalizer: highest plausible feed rate in t/h (whatever the channel's unit); a totalizer step larger than this rate over the elapsed time (with a margin) is a glitch, not feed. Needed by role totalizer."),
            ConfigKey("modulus", .float(min: 1e-9), doc: "Role totalizer: where the counter rolls over to zero, in the channel's unit after scaling. Default for uint16/uint32/uint64: 2^bits × scale (BW500: 2^32 × 0.001 = 4294967.296 t); for other types absent means the counter never rolls over, so a decrease is a reset."),
            ConfigKey("resettable", .bool, default: .bool(false), doc: "Role totalizer: whether the counter can be reset by someone (a partial total). A decrease far from the modulus is then an expected reset; on a non-resettable counter it is still counted from zero, with an alarm event."),
            ConfigKey("tonnes_per_unit", .float(min: 1e-12), doc: "Roles level and stock: tonnes per unit of the channel's value (e.g. 0.45 for a bunker holding 45 t per 100 %). Needed unless the unit is kg or t, which convert by themselves."),
            ConfigKey("stale_after", .duration, doc: "Role heartbeat: when the counter has not changed for this long, the device's readings are marked `stale`. Default: 5 poll intervals, at least 2 s."),
        ])
    }

    /// The `name` of a channel table as written.
    static func name(of table: [String: ConfigValue]) -> String? {
        if case .string(let n)? = table["name"] { n } else { nil }
    }

    /// Where a channel's missing plant parameters are reported.
    enum MissingReport {
        /// At the channel table itself (a device's own channel, or one laid over a profile's).
        case here
        /// At the device's `profile` key: the channel comes from the profile untouched.
        case profile(ConfigReader, String)
        /// Nowhere: checking a profile on its own, which may leave them to the plant.
        case allowed
    }

    /// What a decoded channel still lacks: role parameters the plant must give (a profile may leave them out).
    struct Decoded {
        var channel: ChannelConfig
        var missingParameters: [String]
    }

    /// Decodes one channel table (a device's, a profile's, or a device's laid over its profile's); structural
    /// errors go to the reader's diagnostics, missing plant parameters are returned for the caller to report where
    /// the plant has to add them.
    static func decode(_ ch: ConfigReader, device: String, pollInterval: Duration) -> Decoded {
        let cname = ch.string("name") ?? ""
        var table = RegisterTable(rawValue: ch.string("table") ?? "") ?? .holding
        var address = Int(ch.int("address") ?? 0)
        if let reference = ch.int("register") {
            if ch.has("table") || ch.has("address") {
                ch.error("register", "give either `register` or `table` and `address`, not both")
            } else if let (t, a) = AcquisitionConfig.reference(Int(reference)) {
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
            ch.error("type", "bool is for coils and discrete inputs; for a bit of a register use type \"bit\"")
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
        if table.isBitTable && !(ch.ints("sentinels") ?? []).isEmpty {
            ch.error("sentinels", "a \(table.rawValue) is a single bit: it has no sentinel values")
        }
        var config = ChannelConfig(
            id: ChannelID(cname), table: table, address: address, type: type,
            wordOrder: WordOrder(rawValue: ch.string("word_order") ?? "ABCD") ?? .abcd,
            scale: ch.double("scale") ?? 1, offset: ch.double("offset") ?? 0,
            unit: ch.string("unit").flatMap(Unit.init(rawValue:)),
            sentinels: Set(ch.ints("sentinels") ?? []), bit: bit, wordBits: wordBits, length: length)
        if address + config.registerCount > 65536 {
            ch.error(ch.has("register") ? "register" : "address",
                     "\(type.rawValue) at address \(address) runs past the last address 65535")
        }
        var missing: [String] = []
        config.role = decodeRole(ch, config, pollInterval: pollInterval, missing: &missing)
        return Decoded(channel: config, missingParameters: missing)
    }

    private static func decodeRole(
        _ ch: ConfigReader, _ c: ChannelConfig, pollInterval: Duration, missing: inout [String]
    ) -> ChannelRole? {
        let name = ch.string("role").flatMap(ChannelRole.Name.init(rawValue:))
        for (key, roles) in parameterRoles.sorted(by: { $0.key < $1.key }) where ch.has(key) {
            if name.map({ !roles.contains($0) }) ?? true {
                ch.error(key, "`\(key)` is only for role " + roles.map { "\"\($0.rawValue)\"" }.joined(separator: " or ")
                         + (name.map { " (this channel's role is \"\($0.rawValue)\")" } ?? " (this channel has no role)"))
            }
        }
        guard let name else { return nil }
        func need(_ ok: Bool, _ message: String) -> Bool {
            if !ok { ch.error("role", "role \(name.rawValue) \(message)") }
            return ok
        }
        let typeName = "\(c.type.rawValue)"
        let dimension = c.unit?.dimension
        switch name {
        case .weight:
            guard need(c.type.isNumber, "needs a number type, not \(typeName)"),
                  need(dimension == .mass, "needs unit \"kg\" or \"t\"" + (c.unit.map { ", not \"\($0.rawValue)\"" } ?? ""))
            else { return nil }
            guard let band = ch.double("zero_band") else { missing.append("zero_band"); return nil }
            return .weight(zeroBand: band)
        case .stable, .motion, .overRange, .underRange, .net:
            guard need(c.type == .bool || c.type == .bit, "is a status bit: type must be bool (coil, discrete) or bit, not \(typeName)")
            else { return nil }
            return switch name {
            case .stable: .stable
            case .motion: .motion
            case .overRange: .overRange
            case .underRange: .underRange
            default: .net
            }
        case .ticketNumber, .vehicleID:
            guard need(c.type.isInteger || c.type == .string, "needs an integer or string type, not \(typeName)") else { return nil }
            return name == .ticketNumber ? .ticketNumber : .vehicleID
        case .rate:
            guard need(c.type.isNumber, "needs a number type, not \(typeName)"),
                  need(dimension == .massRate, "needs unit \"kg/h\" or \"t/h\"" + (c.unit.map { ", not \"\($0.rawValue)\"" } ?? ""))
            else { return nil }
            return .rate
        case .totalizer:
            guard need(c.type.isNumber, "needs a number type, not \(typeName)"),
                  need(dimension == .mass, "needs unit \"kg\" or \"t\"" + (c.unit.map { ", not \"\($0.rawValue)\"" } ?? ""))
            else { return nil }
            var modulus = ch.double("modulus")
            if modulus == nil, let bits = c.type.unsignedBits, c.scale > 0, bits < 64 {
                modulus = Double(UInt64(1) << UInt64(bits)) * c.scale
            } else if modulus == nil, c.type == .uint64, c.scale > 0 {
                modulus = 18_446_744_073_709_551_616.0 * c.scale
            }
            guard let maxRate = ch.double("max_rate") else { missing.append("max_rate"); return nil }
            return .totalizer(.init(modulus: modulus, resettable: ch.bool("resettable") ?? false,
                                    maxRateTonnesPerHour: maxRate))
        case .level, .stock:
            guard need(c.type.isNumber, "needs a number type, not \(typeName)") else { return nil }
            let factor: Double
            if let tonnes = c.unit?.toTonnes, dimension == .mass {
                if ch.has("tonnes_per_unit") {
                    ch.error("tonnes_per_unit", "the unit \"\(c.unit!.rawValue)\" is already a mass; leave `tonnes_per_unit` out")
                }
                factor = tonnes
            } else if let f = ch.double("tonnes_per_unit") {
                factor = f
            } else {
                missing.append("tonnes_per_unit")
                return nil
            }
            return name == .level ? .level(tonnesPerUnit: factor) : .stock(tonnesPerUnit: factor)
        case .heartbeat:
            guard need(c.type.isInteger, "needs an integer type (a counter), not \(typeName)") else { return nil }
            let staleAfter = ch.duration("stale_after") ?? max(pollInterval * 5, .seconds(2))
            if staleAfter < pollInterval * 2 {
                ch.error("stale_after", "must be at least two poll intervals (\(pollInterval * 2)), or every slow answer would mark the device stale")
            }
            return .heartbeat(staleAfter: staleAfter)
        }
    }
}

extension AcquisitionConfig {
    /// Decodes a device's (or a profile's) channels: each on its own, then what only the set shows — duplicate
    /// names, overlapping registers, roles a device may have once.
    static func decodeChannels(
        _ items: [(ConfigReader, ChannelConfig.MissingReport)], device: String, pollInterval: Duration
    ) -> [ChannelConfig.Decoded] {
        var out: [ChannelConfig.Decoded] = []
        var names = Set<String>()
        var roleOwners: [String: ChannelID] = [:]
        for (ch, report) in items {
            let decoded = ChannelConfig.decode(ch, device: device, pollInterval: pollInterval)
            let config = decoded.channel
            let cname = config.id.rawValue
            if !isPlainName(cname) { ch.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !names.insert(cname).inserted { ch.error("name", "channel '\(cname)' is defined more than once in \(device)") }
            if !decoded.missingParameters.isEmpty, let role = ch.string("role") {
                let params = decoded.missingParameters.map { "`\($0)`" }.joined(separator: ", ")
                switch report {
                case .here:
                    ch.error("role", "role \(role) needs \(params) (\(Self.parameterHelp(decoded.missingParameters)))")
                case .profile(let dev, let profile):
                    dev.error("profile", "profile '\(profile)' leaves \(params) of channel '\(cname)' (role \(role)) to the plant: add [[device.channel]] with name = \"\(cname)\" and \(params) (\(Self.parameterHelp(decoded.missingParameters)))")
                case .allowed:
                    break
                }
            }
            // Channels may share registers only as bits of one status word; anything else overlapping is a
            // mistake in the map (and would make the planner read a register twice under two meanings).
            let range = config.address..<(config.address + config.registerCount)
            if let other = out.map(\.channel).first(where: { o in
                o.table == config.table && o.address < range.upperBound && range.lowerBound < o.address + o.registerCount
                    && !(o.type == .bit && config.type == .bit && o.address == config.address && o.wordBits == config.wordBits)
            }) {
                ch.error(ch.has("register") ? "register" : "address",
                         "overlaps channel '\(other.id)' (\(other.table.rawValue) \(other.address)...\(other.address + other.registerCount - 1)); only bit channels of the same status word may share registers")
            }
            if let roleName = ch.string("role").flatMap(ChannelRole.Name.init(rawValue:)), roleName.isUniquePerDevice {
                let key = roleName == .motion ? ChannelRole.Name.stable.rawValue : roleName.rawValue
                if let owner = roleOwners[key] {
                    ch.error("role", "\(device) already has channel '\(owner)' with role \(roleName == .motion || roleName == .stable ? "stable/motion" : roleName.rawValue); a device has one")
                } else {
                    roleOwners[key] = config.id
                }
            }
            out.append(decoded)
        }
        return out
    }

    static func parameterHelp(_ names: [String]) -> String {
        names.map { n in
            switch n {
            case "zero_band": "zero_band: the ± band around zero, in the channel's unit, inside which the scale is empty"
            case "max_rate": "max_rate: the highest plausible feed rate in t/h"
            default: "tonnes_per_unit: tonnes per unit of the value"
            }
        }.joined(separator: "; ")
    }
}
