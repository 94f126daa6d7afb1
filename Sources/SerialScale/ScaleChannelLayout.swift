import KilnTallyCore

/// Which channels a stream indicator's frames become, and in which unit: the readings a Modbus weighbridge's poll
/// gives, so the weighbridge tally (which finds its channels by role) makes the same tickets whichever bus the
/// indicator is on.
///
/// Each protocol has a built-in layout (`builtin(for:)`), so a device needs only `protocol = "…"`; the channel
/// names can be changed, a channel left out (nil), `stable` used instead of `motion`.
///
/// | protocol            | channels (role)                                                                          |
/// |---------------------|------------------------------------------------------------------------------------------|
/// | `toledo_continuous` | `weight` (weight), `motion` (motion), `net` (net), `over_range` (over_range), `under_range` (under_range), `tare` |
/// | `yaohua_tf0`        | `weight` (weight)                                                                        |
/// | `xk3190_a12`        | `weight` (weight, from `ww` lines), `net_weight` (from `wn`), `tare` (from `wt`)         |
///
/// Over range: like a Modbus indicator's weight register, the weight reading keeps the frame's value (good) while
/// the `over_range` reading is true, so the tally sees the truck on the scale, raises `weighbridge_over_range`,
/// flags the ticket and captures nothing; a frame out of range without digits (dashes) gives a weight reading of
/// quality `invalid` and no value. Toledo's one out-of-range bit is `under_range` when the weight is negative,
/// `over_range` otherwise.
public struct ScaleChannelLayout: Sendable, Hashable {
    public var scaleProtocol: ScaleProtocol
    /// The unit every weight reading carries (kg or t). Frames in another unit are converted exactly (t, g, and lb,
    /// oz, short tons by their definitions); frames that state no unit (Yaohua TF0) are taken to be in it.
    public var unit: Unit
    /// Role `weight`: the displayed weight (Toledo, Yaohua), the gross weight (A12 `ww`).
    public var weight: ChannelID
    /// Role `motion` (true = in motion). Toledo only.
    public var motion: ChannelID?
    /// Role `stable` (true = stable), the same bit inverted, for a config that prefers it. Toledo only.
    public var stable: ChannelID?
    /// Role `net` (true = the display shows net). Toledo only.
    public var net: ChannelID?
    /// Role `over_range`. Toledo only.
    public var overRange: ChannelID?
    /// Role `under_range`. Toledo only.
    public var underRange: ChannelID?
    /// No role: the tare (Toledo's tare field, A12 `wt` lines).
    public var tare: ChannelID?
    /// No role: the net weight of A12 `wn` lines.
    public var netWeight: ChannelID?

    public init(scaleProtocol: ScaleProtocol, unit: Unit = .kilogram, weight: ChannelID = "weight",
                motion: ChannelID? = nil, stable: ChannelID? = nil, net: ChannelID? = nil, overRange: ChannelID? = nil,
                underRange: ChannelID? = nil, tare: ChannelID? = nil, netWeight: ChannelID? = nil) {
        precondition(unit == .kilogram || unit == .tonne, "a weight is in kg or t")
        self.scaleProtocol = scaleProtocol
        self.unit = unit
        self.weight = weight
        self.motion = motion
        self.stable = stable
        self.net = net
        self.overRange = overRange
        self.underRange = underRange
        self.tare = tare
        self.netWeight = netWeight
    }

    /// The protocol's natural channels (see the table above).
    public static func builtin(for p: ScaleProtocol, unit: Unit = .kilogram) -> ScaleChannelLayout {
        switch p {
        case .toledoContinuous:
            ScaleChannelLayout(scaleProtocol: p, unit: unit, motion: "motion", net: "net", overRange: "over_range",
                               underRange: "under_range", tare: "tare")
        case .yaohuaTF0:
            ScaleChannelLayout(scaleProtocol: p, unit: unit)
        case .xk3190A12:
            ScaleChannelLayout(scaleProtocol: p, unit: unit, tare: "tare", netWeight: "net_weight")
        }
    }

    /// Every channel with its role (nil: none) and unit (nil: a status bit), in a fixed order. `zeroBand` is the
    /// weight role's zero band in `unit` — the plant's figure, as for a Modbus weighbridge (`zero_band`).
    public func channels(zeroBand: Double) -> [(channel: ChannelID, role: ChannelRole?, unit: Unit?)] {
        var out: [(ChannelID, ChannelRole?, Unit?)] = [(weight, .weight(zeroBand: zeroBand), unit)]
        if let motion { out.append((motion, .motion, nil)) }
        if let stable { out.append((stable, .stable, nil)) }
        if let net { out.append((net, .net, nil)) }
        if let overRange { out.append((overRange, .overRange, nil)) }
        if let underRange { out.append((underRange, .underRange, nil)) }
        if let tare { out.append((tare, nil, unit)) }
        if let netWeight { out.append((netWeight, nil, unit)) }
        return out.map { (channel: $0.0, role: $0.1, unit: $0.2) }
    }

    /// The channels and roles as `WeighbridgeConfig.resolveChannels(devices:)` takes them.
    public func channelRoles(zeroBand: Double) -> [ChannelID: ChannelRole?] {
        Dictionary(channels(zeroBand: zeroBand).map { ($0.channel, $0.role) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: - Frames to readings

    /// The readings of one frame, all at `time` (when its last byte arrived), quality good unless the weight is
    /// no weight (no digits, an unrecognised unit, a conversion out of range: `invalid`, no value). Weights are
    /// `.double(mantissa / 10^decimals)` in `unit`; their `raw` is the frame's own mantissa as two words (an
    /// int32, high word first). Status readings are `.bool`, their `raw` the Toledo SWB byte.
    public func readings(of frame: ScaleFrame, device: DeviceID, time: UTCInstant,
                         clockSynchronized: Bool = true) -> [Reading] {
        var out: [Reading] = []
        out.reserveCapacity(7)
        func weightReading(_ channel: ChannelID, _ value: ScaleDecimal?) -> Reading {
            let raw = value.map(Self.words) ?? []
            guard let value, let converted = convert(value, from: frame.unit) else {
                return Reading(device: device, channel: channel, time: time, value: .none, unit: unit,
                               quality: .invalid, clockSynchronized: clockSynchronized, raw: raw)
            }
            return Reading(device: device, channel: channel, time: time, value: .double(converted.doubleValue),
                           unit: unit, quality: .good, clockSynchronized: clockSynchronized, raw: raw)
        }
        func flag(_ channel: ChannelID?, _ value: Bool?) {
            guard let channel, let value else { return }
            out.append(Reading(device: device, channel: channel, time: time, value: .bool(value), unit: nil,
                               quality: .good, clockSynchronized: clockSynchronized,
                               raw: frame.toledoStatus.map { [UInt16($0.b)] } ?? []))
        }
        switch frame.kind {
        case .displayed, .gross:
            out.append(weightReading(weight, frame.weight))
        case .net:
            if frame.scaleProtocol == .xk3190A12 {
                if let netWeight { out.append(weightReading(netWeight, frame.weight)) }
            } else {
                out.append(weightReading(weight, frame.weight))
            }
        case .tare:
            if let tare { out.append(weightReading(tare, frame.weight)) }
        }
        flag(motion, frame.motion)
        flag(stable, frame.motion.map { !$0 })
        flag(net, frame.scaleProtocol == .toledoContinuous ? frame.kind == .net : nil)
        flag(overRange, frame.overRange)
        flag(underRange, frame.underRange)
        if frame.scaleProtocol == .toledoContinuous, let tare, let t = frame.tare {
            out.append(weightReading(tare, t))
        }
        return out
    }

    /// One reading per channel with no value and `quality` (`timeout` when the stream went silent, `comm_failure`
    /// when the line cannot be opened): what a Modbus device that stopped answering gives.
    public func unavailableReadings(device: DeviceID, time: UTCInstant, quality: Quality,
                                    clockSynchronized: Bool = true) -> [Reading] {
        channels(zeroBand: 0).map {
            Reading(device: device, channel: $0.channel, time: time, value: .none, unit: $0.unit, quality: quality,
                    clockSynchronized: clockSynchronized)
        }
    }

    /// `value` (in `from`, or in `unit` when the frame states none) in `unit`, exactly; nil when it cannot be.
    public func convert(_ value: ScaleDecimal, from frameUnit: ScaleUnit?) -> ScaleDecimal? {
        let source: ScaleUnit = frameUnit ?? (unit == .tonne ? .tonne : .kilogram)
        if (source == .kilogram && unit == .kilogram) || (source == .tonne && unit == .tonne) { return value }
        guard let toKilograms = source.kilogramFactor, var kg = value.multiplied(by: toKilograms) else { return nil }
        if unit == .tonne {
            guard kg.decimals + 3 <= 18 else { return nil }
            kg.decimals += 3
        }
        return kg.normalized
    }

    /// A mantissa as the two words of an int32, high word first (what a Modbus indicator's weight register pair
    /// holds); a mantissa beyond int32 keeps its low 32 bits.
    static func words(_ value: ScaleDecimal) -> [UInt16] {
        let v = UInt32(truncatingIfNeeded: value.mantissa)
        return [UInt16(v >> 16), UInt16(v & 0xFFFF)]
    }
}
