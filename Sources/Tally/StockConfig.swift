import KilnTallyCore

/// A stock (bunker, pit, silo) of one material, measured by a `level` or `stock` channel: with it the mass balance
/// closes (opening + received − fed = closing); without it the balance is the residual received − fed.
public struct StockConfig: Sendable, Hashable, Codable {
    public var material: String
    public var device: DeviceID
    public var channel: ChannelID

    public init(material: String, device: DeviceID, channel: ChannelID) {
        self.material = material
        self.device = device
        self.channel = channel
    }

    public static var configSection: ConfigKey {
        ConfigKey("stock", .arrayOfTables(ConfigTable([
            ConfigKey("material", .string, required: true, doc: "The material stocked (as in [[stream]] material and weighbridge tickets); one [[stock]] per material."),
            ConfigKey("device", .string, required: true, doc: "The `[[device]]` measuring it."),
            ConfigKey("channel", .string, required: true, doc: "A channel of that device with role `level` or `stock` (its `tonnes_per_unit` converts it to tonnes)."),
        ])), doc: "Stocks that close each material's mass balance: opening stock + received − fed = closing stock.")
    }

    public static func decode(_ root: ConfigReader) -> [StockConfig] {
        var materials = Set<String>()
        return root.tables("stock").map { (s: ConfigReader) -> StockConfig in
            let material = s.string("material") ?? ""
            if !materials.insert(material).inserted { s.error("material", "material '\(material)' has more than one [[stock]]") }
            return StockConfig(material: material, device: DeviceID(s.string("device") ?? ""), channel: ChannelID(s.string("channel") ?? ""))
        }
    }

    /// The channel's tonnes per unit when it has role level or stock; otherwise the problem, for the config check.
    public func resolve(devices: [DeviceID: [ChannelID: ChannelRole?]]) -> Result<Double, StockProblem> {
        guard let channels = devices[device] else { return .failure(.init(key: "device", message: "no [[device]] named '\(device)'")) }
        guard let role = channels[channel] else {
            return .failure(.init(key: "channel", message: "device '\(device)' has no channel '\(channel)'"))
        }
        switch role {
        case .level(let f)?, .stock(let f)?: return .success(f)
        default:
            return .failure(.init(key: "channel", message: "channel '\(channel)' of device '\(device)' needs role level or stock"
                                  + (role.map { " (it has role \(ChannelRole.Name($0).rawValue))" } ?? " (it has no role)")))
        }
    }

    public struct StockProblem: Error, Hashable {
        public var key: String
        public var message: String
    }
}

/// A stock's value through the shifts: the last good value seen, and each shift's opening value.
public struct StockTracker: Sendable, Hashable, Codable {
    public let material: String
    public let device: DeviceID
    public let channel: ChannelID
    public let tonnesPerUnit: Double
    /// The last good value before the end of the shift being accumulated.
    public private(set) var last: Mass?
    /// The last good value after that end (it belongs to the next shift), until the shift closes.
    public private(set) var after: Mass?
    /// The opening stock of the shift being accumulated (the previous shift's closing, or the first value seen).
    public private(set) var opening: Mass?

    public init(_ config: StockConfig, tonnesPerUnit: Double) {
        material = config.material
        device = config.device
        channel = config.channel
        self.tonnesPerUnit = tonnesPerUnit
    }

    /// Takes a reading; `shiftEnd` is the end of the shift being accumulated (values at or after it wait for the
    /// next shift).
    public mutating func consume(_ r: Reading, shiftEnd: UTCInstant) {
        guard r.device == device, r.channel == channel, r.quality == .good, let v = r.value.doubleValue,
              let m = Mass(v * tonnesPerUnit, .tonne) else { return }
        if r.time >= shiftEnd {
            after = m
            return
        }
        last = m
        if opening == nil { opening = m }
    }

    /// Closes a shift: (opening, closing) — the closing is the last good value before its end, which opens the
    /// next shift.
    public mutating func close() -> (opening: Mass?, closing: Mass?) {
        let result = (opening, last)
        opening = last ?? after
        if let after { last = after }
        after = nil
        return result
    }
}
