import KilnTallyCore

/// A series = one (device, channel, unit). Interned per segment: ids are dense `UInt32` from 0 in order of first use.
public struct SeriesKey: Hashable, Sendable, CustomStringConvertible {
    public var device: DeviceID
    public var channel: ChannelID
    public var unit: Unit?

    public init(device: DeviceID, channel: ChannelID, unit: Unit?) {
        self.device = device
        self.channel = channel
        self.unit = unit
    }

    /// The series `reading` belongs to.
    public init(_ reading: Reading) {
        self.init(device: reading.device, channel: reading.channel, unit: reading.unit)
    }

    public var description: String {
        "\(device.rawValue)/\(channel.rawValue)" + (unit.map { " [\($0.rawValue)]" } ?? "")
    }
}

/// The per-segment dictionary. Encoding adds new series; decoding learns them from the batches in order.
///
/// A value type: a copy taken at any point is a consistent snapshot (the store can keep one per segment and decode any
/// batch with it, since a dictionary that already holds a batch's definitions accepts them again unchanged).
public struct SeriesDictionary: Sendable, Equatable {
    /// Every series, indexed by id.
    public private(set) var keys: [SeriesKey] = []
    private var ids: [SeriesKey: UInt32] = [:]

    public init() {}

    /// Number of series defined (the next new series gets this id).
    public var count: Int { keys.count }

    public func key(for id: UInt32) -> SeriesKey? {
        Int(id) < keys.count ? keys[Int(id)] : nil
    }

    public func id(for key: SeriesKey) -> UInt32? { ids[key] }

    /// The id of `key`, adding it (with the next dense id) when new.
    @inline(__always)
    mutating func intern(_ key: SeriesKey) -> UInt32 {
        if let id = ids[key] { return id }
        return append(key)
    }

    /// Adds a key that is not yet present; returns its id.
    @discardableResult
    mutating func append(_ key: SeriesKey) -> UInt32 {
        precondition(keys.count < Int(UInt32.max), "series dictionary is full")
        let id = UInt32(keys.count)
        keys.append(key)
        ids[key] = id
        return id
    }

    public static func == (a: SeriesDictionary, b: SeriesDictionary) -> Bool { a.keys == b.keys }
}
