import KilnTallyCore

/// A shift is named by the local date it starts on and its name: `2026-11-23/B`.
public struct ShiftID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The local calendar date the shift starts on, `YYYY-MM-DD`.
    public var localDate: String
    public var name: String

    public init(localDate: String, name: String) {
        self.localDate = localDate
        self.name = name
    }

    /// Parses `YYYY-MM-DD/NAME`.
    public init?(_ text: String) {
        guard let slash = text.firstIndex(of: "/") else { return nil }
        let date = String(text[..<slash]), name = String(text[text.index(after: slash)...])
        guard date.count == 10, !name.isEmpty else { return nil }
        self.init(localDate: date, name: name)
    }

    public var description: String { "\(localDate)/\(name)" }

    /// Orders by date, then by name; use `Shift.start` to order shifts in time.
    public static func < (a: ShiftID, b: ShiftID) -> Bool { (a.localDate, a.name) < (b.localDate, b.name) }
}

/// One concrete shift: its id, its bounds in UTC (start inclusive, end exclusive), the crew on duty if the plant
/// rotates crews, and its local start and end as RFC 3339 with the offset in force at each (they differ across a
/// daylight-saving change, which is how a 7- or 9-hour shift shows).
public struct Shift: Sendable, Hashable, Codable {
    public var id: ShiftID
    public var start: UTCInstant
    public var end: UTCInstant
    public var crew: String?
    /// e.g. "2026-03-29T00:00:00+01:00".
    public var localStart: String
    /// e.g. "2026-03-29T08:00:00+02:00".
    public var localEnd: String

    public init(id: ShiftID, start: UTCInstant, end: UTCInstant, crew: String?, localStart: String, localEnd: String) {
        self.id = id
        self.start = start
        self.end = end
        self.crew = crew
        self.localStart = localStart
        self.localEnd = localEnd
    }

    public var length: Duration { .nanoseconds(end.nanosecondsSinceEpoch - start.nanosecondsSinceEpoch) }

    public func contains(_ t: UTCInstant) -> Bool { start <= t && t < end }
}
