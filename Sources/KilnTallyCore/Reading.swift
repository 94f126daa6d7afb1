/// Identifies one device in the plant configuration (e.g. `belt1`, `wb-north`).
public struct DeviceID: Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
    public init(from decoder: Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// Identifies one channel of a device (e.g. `rate`, `total1`).
public struct ChannelID: Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
    public init(from decoder: Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// How far a reading can be trusted. Maps onto the HJ 212 data flags that the tally reports.
public enum Quality: String, Sendable, Codable, CaseIterable {
    /// A value read and decoded normally (HJ 212 `N`).
    case good
    /// The device returned a sentinel that means "no value" (e.g. BW500 22222), or a value out of range (`T`).
    case invalid
    /// The connection to the device was lost or could not be opened (HJ 212 `B`, communication abnormal).
    case commFailure = "comm_failure"
    /// The device answered with a Modbus exception (its code is in `Reading.exceptionCode`), or reported a fault
    /// of its own (HJ 212 `D`).
    case deviceFault = "device_fault"
    /// The value was not measured but entered by a person (HJ 212 `S`).
    case manual
    /// The device did not answer within the response timeout (HJ 212 `B`).
    case timeout
    /// The device answers, but its heartbeat register stopped counting: the values may be frozen (HJ 212 `B`).
    case stale

    /// The HJ 212-2017 data flag a report uses for a value of this quality.
    public var hj212Flag: Character {
        switch self {
        case .good: "N"
        case .invalid: "T"
        case .commFailure, .timeout, .stale: "B"
        case .deviceFault: "D"
        case .manual: "S"
        }
    }
}

/// A decoded value. Integers stay integers so totalizers are exact; floats only where the device sends floats.
public enum ReadingValue: Sendable, Hashable, Codable {
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case bool(Bool)
    case string(String)
    /// No value (the quality says why).
    case none

    /// The value as a Double for display and rates; nil for strings and `none`.
    public var doubleValue: Double? {
        switch self {
        case .int(let v): Double(v)
        case .uint(let v): Double(v)
        case .double(let v): v
        case .bool(let b): b ? 1 : 0
        case .string, .none: nil
        }
    }
}

/// One sample of one channel: the unit of data that flows from acquisition through the store to the uplink.
public struct Reading: Sendable, Hashable, Codable {
    public var device: DeviceID
    public var channel: ChannelID
    /// Wall-clock UTC time of the sample.
    public var time: UTCInstant
    public var value: ReadingValue
    public var unit: Unit?
    public var quality: Quality
    /// Whether the wall clock was known to be synchronized when the sample was taken.
    public var clockSynchronized: Bool
    /// The raw 16-bit registers (or bits as 0/1) the value was decoded from, for traceability.
    public var raw: [UInt16]
    /// The Modbus exception code (1-15) when `quality` is `deviceFault` because the device answered with one;
    /// 0 otherwise.
    public var exceptionCode: UInt8

    public init(
        device: DeviceID, channel: ChannelID, time: UTCInstant, value: ReadingValue, unit: Unit? = nil,
        quality: Quality = .good, clockSynchronized: Bool = true, raw: [UInt16] = [], exceptionCode: UInt8 = 0
    ) {
        self.device = device
        self.channel = channel
        self.time = time
        self.value = value
        self.unit = unit
        self.quality = quality
        self.clockSynchronized = clockSynchronized
        self.raw = raw
        self.exceptionCode = quality == .deviceFault ? exceptionCode & 0x0F : 0
    }
}

/// Names that appear in topics, file names and logs (sites, nodes, buses, devices, channels): `[A-Za-z0-9_-]+`.
public func isPlainName(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.allSatisfy {
        ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95
    }
}
