import Acquisition
import KilnTallyCore
import Logging
import RingStore
import Tally
import Uplink

/// The whole daemon configuration: every module's section, checked in one pass by the core loader.
public struct KilnTallyConfiguration: Sendable {
    public var file: String
    /// Identifies the exact config in force (in the status message, and later in every report): the file's text
    /// and the text of every device profile it uses, so editing a profile changes the hash too.
    public var contentHash: String
    public var logLevel: Logger.Level
    public var acquisition: AcquisitionConfig
    public var uplink: UplinkConfig
    public var store: RingStore.Options
    /// The waste streams the tally accounts.
    public var streams: [StreamConfig]
    /// The weighbridges whose indicators the tally turns into tickets.
    public var weighbridges: [WeighbridgeConfig]
    /// The plant's shifts (three 8-hour shifts from 00:00 in Asia/Shanghai when `[shifts]` is absent).
    public var shifts: ShiftCalendar
    public var tally: TallySettings
    /// Stocks that close the materials' balances.
    public var stocks: [StockConfig]
    /// `[metrics] textfile`: where to write the Prometheus metrics for node_exporter's textfile collector.
    public var metricsTextfile: String?
    public var metricsInterval: Duration = .seconds(15)
    /// Each top-level section as written in the file (defaults not applied): a reload compares the sections read
    /// only at start with these, so no key of theirs can change unnoticed.
    public var sections: [String: ConfigValue] = [:]

    /// The tally's setup from the configuration: each stream's source with its totalizer's parameters taken from
    /// the channel's role, each weighbridge's channels found by role (the config check has validated both).
    public var tallySetup: TallyEngine.Setup {
        let devices = Dictionary(acquisition.devices.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let streams = self.streams.map { s -> TallyEngine.StreamSetup in
            let totalizerChannel = s.totalizer.flatMap { name in devices[s.device]?.channels.first { $0.id == name } }
            var parameters: TotalizerTracker.Parameters?
            if let channel = totalizerChannel, case .totalizer(let role)? = channel.role {
                parameters = TotalizerTracker.Parameters(role: role, unit: channel.unit)
            }
            return .init(s, StreamSource(device: s.device, totalizer: parameters == nil ? nil : s.totalizer,
                                         totalizerParameters: parameters, rate: s.rate, maxGap: s.maxGap,
                                         runThresholdTonnesPerHour: s.runThresholdTonnesPerHour))
        }
        let roles = acquisition.channelRoles
        let weighbridges = self.weighbridges.compactMap { w -> TallyEngine.WeighbridgeSetup? in
            guard case .success(let channels) = w.resolveChannels(devices: roles) else { return nil }
            return .init(w, channels)
        }
        var setup = TallyEngine.Setup(site: uplink.identity.site, node: uplink.identity.node, configHash: contentHash,
                                      calendar: shifts, grace: tally.grace, streams: streams, weighbridges: weighbridges)
        setup.stocks = stocks.compactMap { s in
            guard case .success(let factor) = s.resolve(devices: roles) else { return nil }
            return TallyEngine.StockSetup(s, factor)
        }
        setup.balanceTolerance = tally.balanceTolerance
        return setup
    }

    /// Every section every module registers.
    public static var schema: ConfigSchema {
        var schema = ConfigSchema()
        schema.register(ConfigKey("log", .table(ConfigTable([
            ConfigKey("level", .oneOf(Logger.Level.allCases.map(\.rawValue)), default: .string("info"),
                      doc: "Least severe log level written (trace, debug, info, notice, warning, error, critical)."),
        ])), doc: "Logging of the daemon (to standard error, which systemd sends to the journal)."))
        for section in UplinkConfig.configSections { schema.register(section) }
        for section in AcquisitionConfig.configSections { schema.register(section) }
        for section in RingStore.Options.configSections { schema.register(section) }
        schema.register(StreamConfig.configSection)
        schema.register(WeighbridgeConfig.configSection)
        schema.register(ShiftCalendar.configSection)
        schema.register(TallySettings.configSection)
        schema.register(StockConfig.configSection)
        schema.register(ConfigKey("metrics", .table(ConfigTable([
            ConfigKey("textfile", .string, doc: "Write the metrics (Prometheus text format, as `kilntally metrics` prints them) to this file, replaced atomically, for node_exporter's textfile collector (e.g. /var/lib/prometheus/node-exporter/kilntally.prom; the directory must exist and be writable by the daemon)."),
            ConfigKey("interval", .duration, default: .string("15s"), doc: "How often the textfile is rewritten."),
        ])), doc: "Metrics for Prometheus."))
        return schema
    }

    /// Loads, validates and decodes `path`; every problem found is in the thrown `ConfigErrors`.
    public static func load(file path: String) throws(ConfigErrors) -> KilnTallyConfiguration {
        let document = try ConfigLoader(schema: schema).load(file: path)
        return try decode(document)
    }

    public static func load(text: String, file: String) throws(ConfigErrors) -> KilnTallyConfiguration {
        let document = try ConfigLoader(schema: schema).load(text: text, file: file)
        return try decode(document)
    }

    static func decode(_ document: ConfigDocument) throws(ConfigErrors) -> KilnTallyConfiguration {
        let diagnostics = ConfigDiagnostics(document: document)
        let root = ConfigReader(document: document, diagnostics: diagnostics)
        let acquisition = AcquisitionConfig.decode(root)
        let uplink = UplinkConfig.decode(root)
        let store = RingStore.Options.decode(root)
        let streams = StreamConfig.decode(root)
        // A stream reads channels by role: check them against the devices (profiles included).
        let roles = acquisition.channelRoles
        for (stream, table) in zip(streams, root.tables("stream")) {
            for (key, message) in stream.check(devices: roles) { table.error(key, message) }
        }
        let weighbridges = WeighbridgeConfig.decode(root)
        WeighbridgeConfig.validate(weighbridges, devices: roles, root: root)
        let shifts = ShiftCalendar.decode(root)
        let stocks = StockConfig.decode(root)
        for (stock, table) in zip(stocks, root.tables("stock")) {
            if case .failure(let problem) = stock.resolve(devices: roles) { table.error(problem.key, problem.message) }
        }
        if acquisition.devices.isEmpty && acquisition.streamDevices.isEmpty {
            root.error("device", "no [[device]] is configured: there is nothing to poll")
        }
        let level = root.table("log")?.string("level").flatMap(Logger.Level.init(rawValue:)) ?? .info
        try diagnostics.finish()
        guard let uplink else {
            // decode returns nil only when a required table is missing, which the loader already reported.
            throw ConfigErrors(diagnostics: diagnostics.all)
        }
        var hashed = Array(document.text.utf8)
        for p in acquisition.profiles {
            hashed += [0] + Array(p.name.utf8) + [0] + Array(p.text.utf8)
        }
        let hash = acquisition.profiles.isEmpty ? document.contentHash : ConfigUnits.fnv1a64Hex(hashed)
        var configuration = KilnTallyConfiguration(
            file: document.file, contentHash: hash, logLevel: level, acquisition: acquisition, uplink: uplink, store: store,
            streams: streams, weighbridges: weighbridges, shifts: shifts ?? .standard, tally: TallySettings.decode(root),
            stocks: stocks, metricsTextfile: root.table("metrics")?.string("textfile"),
            metricsInterval: root.table("metrics")?.duration("interval") ?? .seconds(15))
        if case .table(let sections) = document.root { configuration.sections = sections }
        return configuration
    }
}
