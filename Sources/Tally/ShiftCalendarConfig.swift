import KilnTallyCore

extension ShiftCalendar {
    /// The `[shifts]` section this module registers with the core config loader.
    public static var configSection: ConfigKey {
        ConfigKey("shifts", .table(ConfigTable([
            ConfigKey("time_zone", .string, default: "Asia/Shanghai", doc: """
                IANA time zone the daily pattern's start times are in, e.g. "Asia/Shanghai", "Europe/Berlin" (the \
                name of a file under /usr/share/zoneinfo, from the tzdata package; fixed offsets as "Etc/GMT-8", whose \
                sign is inverted). \
                Shifts follow the wall clock: across a daylight-saving change a shift lasts an hour less or more. \
                A start time the clock skips (spring forward) starts at the first instant after the gap; one it \
                shows twice (fall back) starts at the first occurrence. Not used with `cycle`.
                """),
            ConfigKey("shift", .arrayOfTables(ConfigTable([
                ConfigKey("name", .string, required: true, doc: """
                    Name of the shift, part of its id (`2026-11-23/B`) and of MQTT topics: [A-Za-z0-9_-], unique.
                    """),
                ConfigKey("start", .string, required: true, doc: """
                    Local start time, "HH:MM" or "HH:MM:SS" (00:00 to 23:59:59). The shift ends where the next one \
                    starts; the last one ends at the first one's start the next day. Starts must increase down the \
                    list, so list the shifts in the order of the day; a shift that runs past midnight (22:30 to \
                    06:30) keeps the date it started on in its id.
                    """),
            ])), doc: """
                The daily pattern: one table per shift, in the order of the day, e.g. A "00:00", B "08:00", \
                C "16:00"; or A "06:30", B "14:30", C "22:30"; or D "08:00", N "20:00". Lengths may differ. Give \
                either these or `cycle`.
                """),
            ConfigKey("cycle", .durationRange(min: .seconds(1)), doc: """
                A fixed cycle instead of a daily pattern, for demos and tests: every shift lasts this long (a \
                whole number of seconds, e.g. "2m"), from `anchor`. Cycles run in UTC; a shift's id is the UTC \
                date of its start and its name followed by its UTC start time, `2026-11-23/B-081200`, so that \
                every shift of a day has its own id.
                """),
            ConfigKey("anchor", .string, doc: """
                With `cycle` (and required then): an instant one shift starts at, as a quoted RFC 3339 string with \
                an offset on a whole second, e.g. "2026-11-23T08:00:00Z"; shifts start every `cycle` before and \
                after it. That shift is the first of `names`.
                """),
            ConfigKey("names", .array(.string), default: ["A", "B", "C"], doc: """
                With `cycle`: the names the shifts take in turn ([A-Za-z0-9_-], unique).
                """),
            ConfigKey("crews", .table(ConfigTable([
                ConfigKey("anchor_date", .string, doc: """
                    The local date ("YYYY-MM-DD", quoted) on which the rotation's first day falls; the rotation \
                    repeats from there, forwards and backwards. Required with a daily pattern; not used with a \
                    cycle, whose rotation starts with the round of names that starts at `anchor`.
                    """),
                ConfigKey("rotation", .array(.array(.string)), required: true, doc: """
                    One entry per day of the rotation, each listing the crew on each shift of that day in the \
                    pattern's order (with a cycle, a day is one round of `names`), e.g. for 四班三倒 over 8 days: \
                    [["甲","乙","丙"], ["甲","乙","丙"], ["丁","甲","乙"], ["丁","甲","乙"], ["丙","丁","甲"], \
                    ["丙","丁","甲"], ["乙","丙","丁"], ["乙","丙","丁"]]. Each report names its shift's crew.
                    """),
            ])), doc: "Crew rotation (e.g. 四班三倒, four crews over three shifts); absent when crews are not tracked."),
        ])), doc: """
            The shift calendar. Without this section: three 8-hour shifts A 00:00, B 08:00, C 16:00 in \
            Asia/Shanghai. With it, give either a daily pattern (`[[shifts.shift]]`) or a fixed `cycle`.
            """)
    }

    /// The calendar from a validated document: `standard` when there is no `[shifts]` section; nil when the
    /// section has errors, which are recorded in the reader's diagnostics with their key paths and lines.
    public static func decode(_ root: ConfigReader) -> ShiftCalendar? {
        guard let section = root.table("shifts") else {
            guard ZoneRules(identifier: "Asia/Shanghai") != nil else {
                root.error("shifts", "without a [shifts] section the calendar is three 8-hour shifts in Asia/Shanghai, "
                    + "which is not in \(ZoneDatabase.directory) (is the tzdata package installed?)")
                return nil
            }
            return .standard
        }
        let errorsBefore = root.diagnostics.all.count
        let crews = section.table("crews").map(decodeCrews)
        let calendar: ShiftCalendar?
        switch (section.has("shift"), section.has("cycle")) {
        case (true, true):
            section.error("cycle", "give either [[shifts.shift]] tables (a daily pattern) or `cycle` (a fixed cycle), not both")
            return nil
        case (false, false):
            section.error(nil, "give either [[shifts.shift]] tables (a daily pattern) or `cycle` (a fixed cycle); without a [shifts] section the calendar is three 8-hour shifts A 00:00, B 08:00, C 16:00 in Asia/Shanghai")
            return nil
        case (true, false):
            calendar = decodeDaily(section, crews: crews ?? nil)
        case (false, true):
            calendar = decodeCycle(section, crews: crews ?? nil)
        }
        return root.diagnostics.all.count == errorsBefore ? calendar : nil
    }

    private static func decodeDaily(_ section: ConfigReader, crews: CrewRotation?) -> ShiftCalendar? {
        let errors = section.diagnostics.all.count
        for key in ["anchor", "names"] where section.has(key) {
            section.error(key, "is for a `cycle`; a daily pattern names and times each [[shifts.shift]]")
        }
        let tables = section.tables("shift")
        let names = tables.map { $0.string("name") ?? "" }
        let starts = tables.map { t -> TimeOfDay? in
            let text = t.string("start") ?? ""
            let time = TimeOfDay(text)
            if time == nil {
                t.error("start", "expected a time of day \"HH:MM\" or \"HH:MM:SS\" (00:00 to 23:59:59) but found \"\(text)\"")
            }
            return time
        }
        let zoneID = section.string("time_zone") ?? "Asia/Shanghai"
        for p in problems(timeZone: zoneID, names: names, starts: starts, crews: crews) {
            report(p, section, shiftTables: tables)
        }
        guard errors == section.diagnostics.all.count else { return nil }
        let shifts = zip(names, starts).map { DailyShift(name: $0, start: $1!) }
        return try? ShiftCalendar(timeZone: zoneID, shifts: shifts, crews: crews)
    }

    private static func decodeCycle(_ section: ConfigReader, crews: CrewRotation?) -> ShiftCalendar? {
        let errors = section.diagnostics.all.count
        if section.has("time_zone") {
            section.error("time_zone", "is for a daily pattern; a `cycle` runs in UTC (its ids use the UTC date)")
        }
        let length = section.duration("cycle") ?? .seconds(1)
        let names = section.strings("names") ?? []
        var anchor: UTCInstant?
        if let text = section.string("anchor") {
            anchor = UTCInstant(rfc3339: text)
            if anchor == nil {
                section.error("anchor", "expected an RFC 3339 instant with an offset such as \"2026-11-23T08:00:00Z\" but found \"\(text)\"")
            }
        } else {
            section.error("anchor", "a `cycle` needs its anchor: an instant a shift starts at, e.g. \"2026-11-23T08:00:00Z\"")
        }
        // A missing anchor still lets the other keys be checked.
        for p in problems(cycle: length, anchor: anchor ?? UTCInstant(nanosecondsSinceEpoch: 0), names: names, crews: crews) {
            report(p, section, shiftTables: [])
        }
        guard errors == section.diagnostics.all.count, let anchor else { return nil }
        return try? ShiftCalendar(cycle: length, anchor: anchor, names: names, crews: crews)
    }

    /// The rotation as written, or nil (with a report) when its anchor date is malformed.
    private static func decodeCrews(_ table: ConfigReader) -> CrewRotation? {
        var anchor: LocalDate?
        if let text = table.string("anchor_date") {
            anchor = LocalDate(text)
            if anchor == nil {
                table.error("anchor_date", "expected a date \"YYYY-MM-DD\" but found \"\(text)\"")
                return nil
            }
        }
        guard case .array(let days)? = table.value("rotation") else { return nil }
        let rotation = days.map { day -> [String] in
            guard case .array(let crews) = day else { return [] }
            return crews.map { if case .string(let s) = $0 { s } else { "" } }
        }
        return CrewRotation(anchor: anchor, days: rotation)
    }

    /// Reports a problem at the key it is about.
    private static func report(_ p: Problem, _ section: ConfigReader, shiftTables: [ConfigReader]) {
        let crews = section.path(of: "crews")
        switch p {
        case .unknownTimeZone(let id):
            var message = p.description
            if let guess = ConfigUnits.suggestion(for: id, among: ZoneRules.knownIdentifiers) {
                message += " (did you mean \"\(guess)\"?)"
            }
            section.error("time_zone", message)
        case .noShifts:
            section.error(section.has("cycle") ? "names" : "shift", p.description)
        case .invalidName(let i, _), .duplicateName(let i, _):
            if shiftTables.indices.contains(i) {
                shiftTables[i].error("name", p.description)
            } else {
                section.diagnostics.error(at: section.path(of: "names").appending(index: i), p.description)
            }
        case .startNotAfterPrevious(let i, _, _):
            shiftTables[i].error("start", p.description)
        case .cycleTooShort, .cycleNotWholeSeconds:
            section.error("cycle", p.description)
        case .anchorNotWholeSecond:
            section.error("anchor", p.description)
        case .rotationEmpty:
            section.diagnostics.error(at: crews.appending("rotation"), p.description)
        case .rotationNeedsAnchorDate:
            section.diagnostics.error(at: crews.appending("anchor_date"), "required with a daily pattern: " + p.description)
        case .rotationAnchorDateInCycle:
            section.diagnostics.error(at: crews.appending("anchor_date"), p.description)
        case .rotationDayLength(let day, _, _):
            section.diagnostics.error(at: crews.appending("rotation").appending(index: day), p.description)
        case .emptyCrew(let day, let slot):
            section.diagnostics.error(at: crews.appending("rotation").appending(index: day).appending(index: slot), p.description)
        }
    }
}
