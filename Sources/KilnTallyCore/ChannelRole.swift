/// What a channel means to the tally: the vocabulary acquisition hands over (from the config or a device profile)
/// and the tally relies on. A channel without a role is still read, stored and published; the tally ignores it.
///
/// Parameters are resolved at load (units converted, defaults filled in), so the tally never re-derives them.
public enum ChannelRole: Sendable, Hashable {
    /// The weight an indicator shows (gross, or net in net mode). `zeroBand` is the ± band around zero, in the
    /// channel's unit, inside which the scale counts as empty (a truck has left; the next one may come).
    case weight(zeroBand: Double)
    /// A status bit that is true while the weight is stable (e.g. Dini Argeo DGT4X status b1).
    case stable
    /// A status bit that is true while the weight is in motion, i.e. unstable (e.g. Flintec FT-112 status B2,
    /// Toledo SWB b3). The same fact as `stable` with the opposite polarity.
    case motion
    /// True while the indicator is above its capacity (overload): a weight read then is not a weight.
    case overRange
    /// True while the indicator is below zero / under its range.
    case underRange
    /// True while the indicator shows net weight (a tare is active).
    case net
    /// A ticket (label, 磅单) number the indicator assigns to each print.
    case ticketNumber
    /// A vehicle identifier the indicator (or an LPR/IC-card reader behind it) supplies.
    case vehicleID
    /// A feed rate (mass per hour).
    case rate
    /// A counter of mass fed, read as it is; the tally takes deltas between good readings.
    case totalizer(Totalizer)
    /// A bunker or silo level; `tonnesPerUnit` converts the channel's value to tonnes of stock.
    case level(tonnesPerUnit: Double)
    /// A stock (inventory) figure; `tonnesPerUnit` converts the channel's value to tonnes.
    case stock(tonnesPerUnit: Double)
    /// A counter the device increments while it is alive (Flintec FT-112: +1 every 100 ms). When it stops moving
    /// for `staleAfter`, the device's readings are marked `stale`: it answers, but its values may be frozen.
    case heartbeat(staleAfter: Duration)

    public struct Totalizer: Sendable, Hashable {
        /// Where the counter rolls over to zero, in the channel's unit after scaling (BW500: 2^32 counts ×
        /// 0.001 = 4,294,967.296 t). nil: the counter is not expected to roll over, so any decrease is a reset.
        public var modulus: Double?
        /// Whether someone can reset the counter (a partial total); a decrease far from the modulus is then a reset
        /// (count from zero and raise an event), never a negative delta.
        public var resettable: Bool
        /// The highest plausible feed rate, t/h: a delta larger than max_rate × elapsed time (plus a margin) is
        /// rejected as a glitch instead of being counted.
        public var maxRateTonnesPerHour: Double

        public init(modulus: Double?, resettable: Bool, maxRateTonnesPerHour: Double) {
            self.modulus = modulus
            self.resettable = resettable
            self.maxRateTonnesPerHour = maxRateTonnesPerHour
        }
    }

    /// The name used in configuration files and profiles.
    public var name: String { Self.Name(self).rawValue }

    /// The role names as written in configuration files.
    public enum Name: String, Sendable, CaseIterable {
        case weight, stable, motion
        case overRange = "over_range", underRange = "under_range", net
        case ticketNumber = "ticket_no", vehicleID = "vehicle_id"
        case rate, totalizer, level, stock, heartbeat

        public init(_ role: ChannelRole) {
            switch role {
            case .weight: self = .weight
            case .stable: self = .stable
            case .motion: self = .motion
            case .overRange: self = .overRange
            case .underRange: self = .underRange
            case .net: self = .net
            case .ticketNumber: self = .ticketNumber
            case .vehicleID: self = .vehicleID
            case .rate: self = .rate
            case .totalizer: self = .totalizer
            case .level: self = .level
            case .stock: self = .stock
            case .heartbeat: self = .heartbeat
            }
        }

        /// Roles that are one status bit.
        public var isFlag: Bool {
            switch self {
            case .stable, .motion, .overRange, .underRange, .net: true
            default: false
            }
        }

        /// Roles a device has at most one channel of (a weighbridge has one weight, one stability bit …).
        /// `stable` and `motion` count as one: they are the same fact.
        public var isUniquePerDevice: Bool {
            switch self {
            case .rate, .totalizer, .level, .stock: false
            default: true
            }
        }

        public var summary: String {
            switch self {
            case .weight: "the indicator's weight (kg or t), with `zero_band`"
            case .stable: "status bit, true = weight stable (e.g. DGT4X b1)"
            case .motion: "status bit, true = weight in motion / unstable (e.g. FT-112 B2, Toledo SWB b3)"
            case .overRange: "status bit, true = over capacity"
            case .underRange: "status bit, true = under zero / under range"
            case .net: "status bit, true = net mode (tare active)"
            case .ticketNumber: "ticket (label) number from the indicator"
            case .vehicleID: "vehicle identifier"
            case .rate: "feed rate (kg/h or t/h)"
            case .totalizer: "mass counter (kg or t), with `max_rate` and optionally `modulus`, `resettable`"
            case .level: "bunker/silo level, with `tonnes_per_unit` unless in kg or t"
            case .stock: "stock figure, with `tonnes_per_unit` unless in kg or t"
            case .heartbeat: "a counter the device increments while alive, optionally with `stale_after`"
            }
        }
    }
}
