import KilnTallyCore

extension TallyEngine {
    /// What the tally accounts and how: identity, shift calendar, streams, weighbridges, stocks. Built from the
    /// configuration; Codable so that a change of configuration can be stored as an input (and replayed) and the
    /// setups in force are part of the checkpoint.
    public struct Setup: Sendable, Hashable, Codable {
        public var site: String
        public var node: String
        /// The hash of the configuration this setup comes from; every record names the one in force.
        public var configHash: String
        public var calendar: ShiftCalendar
        public var grace: Duration
        public var streams: [StreamSetup]
        public var weighbridges: [WeighbridgeSetup]
        /// Stocks closing the balance, with their channels' tonnes per unit.
        public var stocks: [StockSetup] = []
        /// Above this absolute imbalance (the residual, or the closing discrepancy with a stock) a material's
        /// balance raises an `imbalance` alarm.
        public var balanceTolerance: Mass = Mass(kilograms: 2_000)

        public init(site: String, node: String, configHash: String, calendar: ShiftCalendar, grace: Duration,
                    streams: [StreamSetup], weighbridges: [WeighbridgeSetup]) {
            self.site = site
            self.node = node
            self.configHash = configHash
            self.calendar = calendar
            self.grace = grace
            self.streams = streams
            self.weighbridges = weighbridges
        }

        /// What a shift report needs of the setup in force during that shift.
        var plan: ReportPlan {
            ReportPlan(site: site, node: node, configHash: configHash, streams: streams, balanceTolerance: balanceTolerance)
        }
    }

    /// A stream as configured, with its source (the totalizer's parameters taken from the channel's role).
    public struct StreamSetup: Sendable, Hashable, Codable {
        public var config: StreamConfig
        public var source: StreamSource
        public init(_ config: StreamConfig, _ source: StreamSource) {
            self.config = config
            self.source = source
        }
    }

    /// A weighbridge as configured, with its indicator's channels found by role.
    public struct WeighbridgeSetup: Sendable, Hashable, Codable {
        public var config: WeighbridgeConfig
        public var channels: WeighbridgeChannels
        public init(_ config: WeighbridgeConfig, _ channels: WeighbridgeChannels) {
            self.config = config
            self.channels = channels
        }
    }

    /// A stock as configured, with its channel's tonnes per unit.
    public struct StockSetup: Sendable, Hashable, Codable {
        public var config: StockConfig
        public var tonnesPerUnit: Double
        public init(_ config: StockConfig, _ tonnesPerUnit: Double) {
            self.config = config
            self.tonnesPerUnit = tonnesPerUnit
        }
    }

    /// A setup and the instant it took (or takes) effect: nil for the first one.
    public struct SetupEra: Sendable, Hashable, Codable {
        public var from: UTCInstant?
        public var setup: Setup
    }

    /// The part of a setup a shift report is rendered from, kept with the report so that a later revision renders
    /// with the configuration that was in force during the shift, whatever is in force when it is revised.
    public struct ReportPlan: Sendable, Hashable, Codable {
        public var site: String
        public var node: String
        public var configHash: String
        public var streams: [StreamSetup]
        public var balanceTolerance: Mass
    }

    /// One stream's running tally, and the shifts it reports on: from the shift starting at `from` (nil: from the
    /// beginning) to the one ending at `until` (nil: for as long as it is configured). A stream added or changed by
    /// a new configuration gets a slot from the boundary on, while the slot it replaces reports until that
    /// boundary; the new slot starts reading at once, so its first shift has an interpolated start value.
    public struct StreamSlot: Sendable, Hashable, Codable {
        public var setup: StreamSetup
        public var tally: StreamTally
        public var from: UTCInstant?
        public var until: UTCInstant?

        public var name: String { setup.config.name }

        /// Whether the shift starting at `shiftStart` is reported from this slot.
        public func covers(_ shiftStart: UTCInstant) -> Bool {
            (from.map { shiftStart >= $0 } ?? true) && (until.map { shiftStart < $0 } ?? true)
        }
    }
}
