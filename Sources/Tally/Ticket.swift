import KilnTallyCore

/// A weighbridge ticket (磅单): one truck's weighings and the net mass they give.
///
/// Every record about a ticket has its own revision, starting at 1: two-pass, the first weighing gives revision 1
/// (`open`) and the second the next one (`closed`); one-pass, the only weighing gives revision 1, closed. A
/// correction (material, void) gives the next revision of whatever state the ticket is in, flagged `manual` (HJ 212
/// `S`) with the operator and the reason. A ticket belongs to the shift that contains `closedAt`.
///
/// Masses are exact: the indicator's weights as read (integer kilograms on a truck scale), never binary sums.
public struct Ticket: Sendable, Hashable, Codable {
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Weighed once, waiting for its second weighing (two-pass).
        case open
        case closed
        /// Declared false by an operator; it counts for nothing, but stays in the record.
        case voided
    }

    /// Which way the material went, from which of the two weighings was heavier.
    public enum Direction: String, Sendable, Hashable, Codable, CaseIterable {
        /// Came in at least as heavy as it left (or one-pass): a delivery to the plant, a receipt.
        case received
        /// Came in lighter than it left: a pickup (material leaving the plant); not a receipt.
        case dispatched
    }

    public enum TareSource: String, Sendable, Hashable, Codable, CaseIterable {
        /// The lighter of the two weighings.
        case weighed
        /// The vehicle's preset tare (one-pass).
        case preset
    }

    public enum MaterialSource: String, Sendable, Hashable, Codable, CaseIterable {
        /// The weighbridge's material channel at a capture.
        case channel
        /// The weighbridge's `default_material`.
        case configured = "default"
        /// Set by an operator.
        case manual
    }

    /// A condition worth keeping with the ticket, for the audit and the report flags.
    public enum Flag: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
        /// A capture's readings were taken while the wall clock was not known to be synchronized.
        case clockUnsynchronized = "clock_unsynchronized"
        /// The indicator reported over range while one of the ticket's trucks was on the scale.
        case overRange = "over_range"
        /// The tare is the vehicle's preset tare, not a weighing.
        case presetTare = "preset_tare"
        /// An operator corrected the ticket (HJ 212 `S`).
        case manual

        public static func < (a: Flag, b: Flag) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    /// "<weighbridge>-<running number>": unique per weighbridge and the same on every replay of the same
    /// readings. The indicator's own number is `indicatorTicket` (indicators' counters can be reset or re-used, and
    /// an id is what a hub drops duplicates by).
    public var id: String
    public var weighbridge: String
    public var device: DeviceID
    public var revision: Int
    public var status: Status
    public var material: String
    public var materialSource: MaterialSource
    public var vehicle: String?
    /// The indicator's ticket (label) number at the first weighing, if it has such a register.
    public var indicatorTicket: String?
    /// The first weighing (for a delivery: the loaded truck).
    public var inbound: WeighingSnapshot
    /// The second weighing (two-pass, once closed).
    public var outbound: WeighingSnapshot?
    /// The heavier weighing; nil while open.
    public var gross: Mass?
    /// The lighter weighing, or the preset tare; nil while open.
    public var tare: Mass?
    /// gross − tare (≥ 0); nil while open.
    public var net: Mass?
    public var tareSource: TareSource?
    public var direction: Direction?
    /// When the ticket closed (the time of its last weighing): the shift it belongs to contains this instant.
    /// nil while open, and for a ticket voided while open.
    public var closedAt: UTCInstant?
    /// Sorted, each at most once.
    public private(set) var flags: [Flag]
    /// Every correction, oldest first.
    public var corrections: [Correction]

    /// A manual change to a ticket.
    public struct Correction: Sendable, Hashable, Codable {
        public enum Action: Sendable, Hashable, Codable {
            case setMaterial(from: String, to: String)
            case void
        }
        public var action: Action
        /// The ticket revision this correction produced.
        public var revision: Int
        public var time: UTCInstant
        public var operatorName: String
        public var reason: String

        public init(action: Action, revision: Int, time: UTCInstant, operatorName: String, reason: String) {
            self.action = action
            self.revision = revision
            self.time = time
            self.operatorName = operatorName
            self.reason = reason
        }
    }

    public init(id: String, weighbridge: String, device: DeviceID, revision: Int, status: Status, material: String,
                materialSource: MaterialSource, vehicle: String?, indicatorTicket: String?, inbound: WeighingSnapshot,
                outbound: WeighingSnapshot? = nil, gross: Mass? = nil, tare: Mass? = nil, net: Mass? = nil,
                tareSource: TareSource? = nil, direction: Direction? = nil, closedAt: UTCInstant? = nil,
                flags: [Flag] = [], corrections: [Correction] = []) {
        self.id = id
        self.weighbridge = weighbridge
        self.device = device
        self.revision = revision
        self.status = status
        self.material = material
        self.materialSource = materialSource
        self.vehicle = vehicle
        self.indicatorTicket = indicatorTicket
        self.inbound = inbound
        self.outbound = outbound
        self.gross = gross
        self.tare = tare
        self.net = net
        self.tareSource = tareSource
        self.direction = direction
        self.closedAt = closedAt
        self.flags = []
        self.corrections = corrections
        for f in flags { insert(f) }
    }

    public mutating func insert(_ flag: Flag) {
        if let i = flags.firstIndex(where: { $0 >= flag }) {
            if flags[i] != flag { flags.insert(flag, at: i) }
        } else {
            flags.append(flag)
        }
    }

    /// The HJ 212 data flag of the ticket, by precedence: `S` (corrected by an operator) over `T` (over range seen
    /// on the scale) over `N`.
    public var hj212Flag: Character { Character(dataFlag.rawValue) }

    /// The ticket's data flag by the table in `DataFlag`: S (corrected) before T (over range on the scale) before
    /// K (clock not synchronized at a capture) before N.
    public var dataFlag: DataFlag {
        DataFlag.worst(flags.compactMap { f -> DataFlag? in
            switch f {
            case .manual: .manual
            case .overRange: .rejected
            case .clockUnsynchronized: .clockUnsynchronized
            case .presetTare: nil
            }
        })
    }

    /// Whether the ticket's net counts as material received: closed (not voided) and a delivery.
    public var isReceipt: Bool { status == .closed && direction == .received }
}

/// What the indicator showed when a weight was captured: the audit evidence of one weighing.
public struct WeighingSnapshot: Sendable, Hashable, Codable {
    /// The time of the weight reading.
    public var time: UTCInstant
    public var weight: Mass
    /// The registers the weight was decoded from.
    public var rawWeight: [UInt16]
    /// The status bits read with it (stable/motion, over/under range, net), in that order.
    public var status: [StatusBit]
    public var indicatorTicket: String?
    public var vehicle: String?
    /// The material channel's value, if configured and shown.
    public var material: String?
    /// The software check's spread over its window (highest − lowest weight), when configured.
    public var spread: Mass?
    /// Whether every reading of the capture was taken with a synchronized clock.
    public var clockSynchronized: Bool

    public init(time: UTCInstant, weight: Mass, rawWeight: [UInt16], status: [StatusBit], indicatorTicket: String?,
                vehicle: String?, material: String?, spread: Mass?, clockSynchronized: Bool) {
        self.time = time
        self.weight = weight
        self.rawWeight = rawWeight
        self.status = status
        self.indicatorTicket = indicatorTicket
        self.vehicle = vehicle
        self.material = material
        self.spread = spread
        self.clockSynchronized = clockSynchronized
    }

    public struct StatusBit: Sendable, Hashable, Codable {
        /// The role name, as in configuration files (`stable`, `motion`, `over_range`, `under_range`, `net`).
        public var role: String
        public var channel: ChannelID
        public var value: Bool
        /// The registers (or bits) the value was decoded from.
        public var raw: [UInt16]

        public init(role: String, channel: ChannelID, value: Bool, raw: [UInt16]) {
            self.role = role
            self.channel = channel
            self.value = value
            self.raw = raw
        }
    }
}
