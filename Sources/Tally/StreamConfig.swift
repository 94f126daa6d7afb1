import KilnTallyCore

/// A waste stream as configured: a material fed at a feed point from a device's totalizer and/or rate channel.
/// The channels' roles are checked against the acquisition config by the daemon's configuration (which sees both).
public struct StreamConfig: Sendable, Hashable, Codable {
    /// Feed points of HJ 662's list.
    public enum FeedPoint: String, Sendable, Hashable, CaseIterable, Codable {
        case rawMill = "raw_mill", riserDuct = "riser_duct", calciner, kilnInlet = "kiln_inlet", kilnHood = "kiln_hood"
        case mainBurner = "main_burner"
    }

    public var name: String
    public var material: String
    public var feedPoint: FeedPoint
    public var device: DeviceID
    public var totalizer: ChannelID?
    public var rate: ChannelID?
    public var maxGap: Duration
    public var runThresholdTonnesPerHour: Double
    /// Relative disagreement between the totalizer and the integrated rate above which the report says so.
    public var disagreementTolerance: Double

    public init(name: String, material: String, feedPoint: FeedPoint, device: DeviceID, totalizer: ChannelID?,
                rate: ChannelID?, maxGap: Duration, runThresholdTonnesPerHour: Double, disagreementTolerance: Double) {
        self.name = name
        self.material = material
        self.feedPoint = feedPoint
        self.device = device
        self.totalizer = totalizer
        self.rate = rate
        self.maxGap = maxGap
        self.runThresholdTonnesPerHour = runThresholdTonnesPerHour
        self.disagreementTolerance = disagreementTolerance
    }

    /// The `[[stream]]` section registered with the core config loader.
    public static var configSection: ConfigKey {
        ConfigKey("stream", .arrayOfTables(ConfigTable([
            ConfigKey("name", .string, required: true, doc: "Stream name, unique; [A-Za-z0-9_-]. Reports list streams by it."),
            ConfigKey("material", .string, required: true, doc: "The waste material, e.g. \"msw\", \"rdf\", \"srf\", \"municipal_sludge\", \"industrial_solid_waste\"; receipts on the weighbridge are balanced against feed per material."),
            ConfigKey("feed_point", .oneOf(FeedPoint.allCases.map(\.rawValue)), required: true, doc: "Where it is fed (HJ 662's list): raw_mill, riser_duct, calciner, kiln_inlet, kiln_hood, main_burner."),
            ConfigKey("device", .string, required: true, doc: "The `[[device]]` the stream is measured by."),
            ConfigKey("totalizer", .string, doc: "A channel of that device with role `totalizer`: the authoritative mass (deltas between good readings)."),
            ConfigKey("rate", .string, doc: "A channel of that device with role `rate`: integrated over time (trapezoid) when there is no totalizer, a cross-check when there is."),
            ConfigKey("max_gap", .duration, default: .string("30s"), doc: "Good readings further apart than this are not bridged: the integration adds nothing for the gap and coverage drops (flag B)."),
            ConfigKey("run_threshold", .float(min: 0), default: .float(0.5), doc: "A rate above this (t/h) counts as running (the report's run time)."),
            ConfigKey("disagreement_tolerance", .float(min: 0, max: 1), default: .float(0.05), doc: "Relative difference between the totalizer's mass and the integrated rate above which the report flags the disagreement."),
        ])), doc: "Waste streams: what the tally accounts per shift.")
    }

    /// Decodes every `[[stream]]`; structural errors go to the reader's diagnostics.
    public static func decode(_ root: ConfigReader) -> [StreamConfig] {
        var names = Set<String>()
        return root.tables("stream").map { (s: ConfigReader) -> StreamConfig in
            let name = s.string("name") ?? ""
            if !isPlainName(name) { s.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !names.insert(name).inserted { s.error("name", "stream '\(name)' is defined more than once") }
            let material = s.string("material") ?? ""
            if !isPlainName(material) { s.error("material", "must be non-empty and use only A-Z a-z 0-9 _ -") }
            if !s.has("totalizer") && !s.has("rate") {
                s.error(nil, "a stream needs a `totalizer` or a `rate` channel (or both)")
            }
            return StreamConfig(
                name: name, material: material, feedPoint: s.value("feed_point", as: FeedPoint.self) ?? .calciner,
                device: DeviceID(s.string("device") ?? ""), totalizer: s.string("totalizer").map { ChannelID($0) },
                rate: s.string("rate").map { ChannelID($0) }, maxGap: s.duration("max_gap") ?? .seconds(30),
                runThresholdTonnesPerHour: s.double("run_threshold") ?? 0.5,
                disagreementTolerance: s.double("disagreement_tolerance") ?? 0.05)
        }
    }

    /// Checks the stream against the acquisition config's devices (id → channel → role): the device exists and the
    /// channels have the roles the stream reads them as. Returns (key, message) pairs for the caller to report.
    public func check(devices: [DeviceID: [ChannelID: ChannelRole?]]) -> [(key: String, message: String)] {
        guard let channels = devices[device] else {
            return [("device", "no [[device]] named '\(device)'; defined: \(devices.keys.map(\.rawValue).sorted().joined(separator: ", "))")]
        }
        var problems: [(String, String)] = []
        func need(_ key: String, _ channel: ChannelID?, _ role: ChannelRole.Name) {
            guard let channel else { return }
            guard let r = channels[channel] else {
                problems.append((key, "device '\(device)' has no channel '\(channel)'"))
                return
            }
            if r.map(ChannelRole.Name.init) != role {
                problems.append((key, "channel '\(channel)' of device '\(device)' needs role \(role.rawValue)" + (r.map { " (it has role \(ChannelRole.Name($0).rawValue))" } ?? " (it has no role)")))
            }
        }
        need("totalizer", totalizer, .totalizer)
        need("rate", rate, .rate)
        return problems
    }
}

extension TotalizerTracker.Parameters {
    /// The tracker's parameters from a channel's totalizer role and unit (kg or t); nil for other units.
    public init?(role: ChannelRole.Totalizer, unit: Unit?) {
        guard let unit, Mass.milligramsPerUnit(unit) != nil else { return nil }
        // A modulus too large for milligrams in Int64 (a 64-bit counter) is treated as none: it never rolls over.
        self.init(modulus: role.modulus.flatMap { Mass($0, unit) },
                  resettable: role.resettable, maxRateTonnesPerHour: role.maxRateTonnesPerHour)
    }
}
