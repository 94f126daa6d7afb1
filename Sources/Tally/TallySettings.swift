import KilnTallyCore

/// `[tally]`: when shifts close and how often the clock is recorded.
public struct TallySettings: Sendable, Hashable {
    /// A shift closes this long after its end, so readings that bracket the boundary can still arrive.
    public var grace: Duration
    /// How often the daemon records a clock tick in the store (what closes shifts when no device answers, and what
    /// makes a replay of the store close them at the same instants).
    public var tickInterval: Duration
    /// A material's balance raises an alarm when it is off by more than this.
    public var balanceTolerance: Mass

    public init(grace: Duration = .seconds(300), tickInterval: Duration = .seconds(5), balanceTolerance: Mass = Mass(kilograms: 2_000)) {
        self.grace = grace
        self.tickInterval = tickInterval
        self.balanceTolerance = balanceTolerance
    }

    public static var configSection: ConfigKey {
        ConfigKey("tally", .table(ConfigTable([
            ConfigKey("grace", .durationRange(min: .zero, max: .seconds(86_400)), default: .string("5m"), doc: "How long after a shift's end it closes: readings that arrive within it still bracket the boundary (its value is interpolated); a reading that changes a closed shift later produces a new revision of its report."),
            ConfigKey("balance_tolerance", .float(min: 0), default: .float(2), doc: "Tonnes: a material's shift balance — opening stock + received − fed − closing stock with a [[stock]], else received − fed — off by more than this raises an `imbalance` alarm and sets the report's `exceeded`."),
            ConfigKey("tick_interval", .durationRange(min: .milliseconds(100), max: .seconds(60)), default: .string("5s"), doc: "How often a clock tick is recorded in the store (device `kilntally`, channel `clock`): ticks close shifts on time when no device answers, and replaying the store closes them at the same instants."),
        ])), default: .table([:]), doc: "The per-shift tally: closing and clock ticks. It runs when there is at least one [[stream]] or [[weighbridge]].")
    }

    public static func decode(_ root: ConfigReader) -> TallySettings {
        let t = root.table("tally")
        return TallySettings(grace: t?.duration("grace") ?? .seconds(300), tickInterval: t?.duration("tick_interval") ?? .seconds(5),
                             balanceTolerance: Mass(t?.double("balance_tolerance") ?? 2, .tonne) ?? Mass(kilograms: 2_000))
    }
}
