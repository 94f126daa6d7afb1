import KilnTallyCore

/// A calendar encodes only what defines it, the pattern and the crew rotation, with the key names of the `[shifts]`
/// config section; it decodes through the validating initialisers, so a checkpoint cannot smuggle in a calendar
/// the config loader would refuse (a refused one is `DecodingError.dataCorrupted` carrying the `Problem`'s words).
///
/// A daily pattern (`crews` is left out when the plant does not rotate crews; a start is `"HH:MM"`, or
/// `"HH:MM:SS"` when the seconds are not zero):
///
/// ```json
/// {"daily": {"time_zone": "Asia/Shanghai",
///            "shifts": [{"name": "A", "start": "00:00"}, {"name": "B", "start": "08:00"}, {"name": "C", "start": "16:00"}]},
///  "crews": {"anchor_date": "2026-11-20", "rotation": [["甲", "丁", "丙"], ["甲", "丁", "丙"], …]}}
/// ```
///
/// A cycle (the length in whole seconds, which every valid cycle has; the anchor in `UTCInstant`'s own form; a
/// cycle's rotation has no `anchor_date`):
///
/// ```json
/// {"cycle": {"length_seconds": 120, "anchor": {"nanosecondsSinceEpoch": 1795420800000000000}, "names": ["A", "B", "C"]}}
/// ```
extension ShiftCalendar: Codable {
    private enum CodingKeys: String, CodingKey { case daily, cycle, crews }
    private enum DailyKeys: String, CodingKey { case timeZone = "time_zone", shifts }
    private enum CycleKeys: String, CodingKey { case lengthSeconds = "length_seconds", anchor, names }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch pattern {
        case .daily(let timeZone, let shifts):
            var d = c.nestedContainer(keyedBy: DailyKeys.self, forKey: .daily)
            try d.encode(timeZone, forKey: .timeZone)
            try d.encode(shifts, forKey: .shifts)
        case .cycle(let length, let anchor, let names):
            var d = c.nestedContainer(keyedBy: CycleKeys.self, forKey: .cycle)
            try d.encode(length.components.seconds, forKey: .lengthSeconds)
            try d.encode(anchor, forKey: .anchor)
            try d.encode(names, forKey: .names)
        }
        try c.encodeIfPresent(crews, forKey: .crews)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let crews = try c.decodeIfPresent(CrewRotation.self, forKey: .crews)
        switch (c.contains(.daily), c.contains(.cycle)) {
        case (true, false):
            let d = try c.nestedContainer(keyedBy: DailyKeys.self, forKey: .daily)
            let timeZone = try d.decode(String.self, forKey: .timeZone)
            let shifts = try d.decode([DailyShift].self, forKey: .shifts)
            do {
                self = try ShiftCalendar(timeZone: timeZone, shifts: shifts, crews: crews)
            } catch {
                throw Self.corrupted(error, at: c.codingPath + [CodingKeys.daily])
            }
        case (false, true):
            let d = try c.nestedContainer(keyedBy: CycleKeys.self, forKey: .cycle)
            let length = Duration.seconds(try d.decode(Int64.self, forKey: .lengthSeconds))
            let anchor = try d.decode(UTCInstant.self, forKey: .anchor)
            let names = try d.decode([String].self, forKey: .names)
            do {
                self = try ShiftCalendar(cycle: length, anchor: anchor, names: names, crews: crews)
            } catch {
                throw Self.corrupted(error, at: c.codingPath + [CodingKeys.cycle])
            }
        default:
            throw DecodingError.dataCorrupted(.init(
                codingPath: c.codingPath, debugDescription: "a shift calendar has exactly one of \"daily\" and \"cycle\""))
        }
    }

    private static func corrupted(_ problem: Problem, at path: [any CodingKey]) -> DecodingError {
        .dataCorrupted(.init(codingPath: path, debugDescription: problem.description, underlyingError: problem))
    }
}

/// `{"name": "A", "start": "06:30"}`.
extension ShiftCalendar.DailyShift: Codable {
    private enum CodingKeys: String, CodingKey { case name, start }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name), start: try c.decode(TimeOfDay.self, forKey: .start))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(start, forKey: .start)
    }
}

/// `{"anchor_date": "2026-11-20", "rotation": [["甲", "乙", "丙"], …]}`; `anchor_date` is left out when nil (a cycle).
extension ShiftCalendar.CrewRotation: Codable {
    private enum CodingKeys: String, CodingKey { case anchor = "anchor_date", days = "rotation" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(anchor: try c.decodeIfPresent(LocalDate.self, forKey: .anchor), days: try c.decode([[String]].self, forKey: .days))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(anchor, forKey: .anchor)
        try c.encode(days, forKey: .days)
    }
}

/// A string as `description` writes it and `init?(_:)` reads it: `"06:30"`, `"14:30:15"`.
extension TimeOfDay: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let t = TimeOfDay(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected a time \"HH:MM\" or \"HH:MM:SS\" but found \"\(text)\"")
        }
        self = t
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// A string `"YYYY-MM-DD"`.
extension LocalDate: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let d = LocalDate(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected a date \"YYYY-MM-DD\" but found \"\(text)\"")
        }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
