import KilnTallyCore

/// The plant's shift calendar: which shift an instant belongs to, when each shift starts and ends, which crew is on.
///
/// Two kinds of pattern:
/// - **Daily** (production): an IANA time zone and named shifts with local start times, e.g. A 00:00, B 08:00,
///   C 16:00, or A 06:30, B 14:30, C 22:30, or D 08:00, N 20:00. A shift ends where the next one starts; the last
///   one of the day ends at the first one's start on the next day. Lengths may differ. A shift is identified by the
///   local date it starts on and its name: the night shift that starts at 22:30 on 2026-11-23 is `2026-11-23/C`,
///   also at 03:00 on the 24th.
/// - **Cycle** (demos and tests): shifts of a fixed length, e.g. 2 minutes, starting at an anchor instant and every
///   cycle before and after it, named A, B, C, A, … in turn. Cycles run in UTC. Because a day holds many cycles, a
///   cycle shift's id is the UTC date of its start and its name followed by its UTC start time:
///   `2026-11-23/B-081200`, so that every shift has its own id (reports, topics and revisions are keyed by it).
///
/// **Daylight saving.** Shifts follow the wall clock, so a shift that spans a change is an hour shorter or longer:
/// with shifts at 00:00/08:00/16:00 in Europe/Berlin, `2026-03-29/A` lasts 7 hours and `2026-10-25/A` 9 hours.
/// A start time that occurs twice (clocks go back) starts at its first occurrence. A start time that does not occur
/// (clocks go forward over it) starts at the first instant after the gap, the instant of the change: a shift set to
/// start at 02:30 starts at 03:00 on the day Berlin skips from 02:00 to 03:00. In short, a shift starts at the first
/// instant at which the local clock reads its start time or later. Should two starts fall in one gap, the earlier
/// shift would last no time at all; such a shift does not happen and the calendar never returns it.
///
/// Time-zone rules come from the system's time-zone database (`/usr/share/zoneinfo`, or `$TZDIR`; Debian's `tzdata`
/// package), read once per process by `ZoneDatabase`: a country's new rules arrive with a tzdata update and apply
/// from the daemon's next start.
///
/// **Crews.** An optional rotation (四班三倒: four crews over three shifts) gives each shift its crew; see
/// `CrewRotation`.
///
/// All lookups are pure. `shift(containing:)` on the calendar costs a few time-zone look-ups; on the hot path, keep
/// a `ShiftCursor`, which answers from the shift it found last while the instant is still inside it.
public struct ShiftCalendar: Sendable, Hashable {
    /// One shift of a daily pattern: its name (`[A-Za-z0-9_-]`, as it appears in ids and topics) and local start.
    public struct DailyShift: Sendable, Hashable {
        /// `[A-Za-z0-9_-]+`, unique within the pattern.
        public var name: String
        /// Where the shift starts on the local wall clock; it ends where the next one starts.
        public var start: TimeOfDay

        /// A shift named `name` starting at `start`.
        public init(name: String, start: TimeOfDay) {
            self.name = name
            self.start = start
        }
    }

    /// What the calendar repeats.
    public enum Pattern: Sendable, Hashable {
        /// Named shifts with local start times in an IANA time zone, in the order of the day.
        case daily(timeZone: String, shifts: [DailyShift])
        /// Shifts of `length` starting at `anchor` and every `length` before and after it, named `names` in turn
        /// (the shift starting at `anchor` is `names[0]`).
        case cycle(length: Duration, anchor: UTCInstant, names: [String])
    }

    /// A crew rotation: `days[k][i]` is the crew on shift `i` (in pattern order) of the `k`-th day of the rotation,
    /// which repeats every `days.count` days. For a daily pattern day 0 is the local date `anchor` (and days before
    /// it count backwards through the rotation); for a cycle a "day" is one round of the names, and day 0 is the
    /// round that starts at the cycle's anchor (`anchor` is nil).
    ///
    /// 四班三倒 with crews 甲乙丙丁 over shifts A/B/C and two days on each shift, then two off:
    /// `[["甲","丁","丙"], ["甲","丁","丙"], ["乙","甲","丁"], ["乙","甲","丁"], ["丙","乙","甲"], …]` (8 days).
    public struct CrewRotation: Sendable, Hashable {
        /// The local date of rotation day 0 (daily patterns); nil for a cycle.
        public var anchor: LocalDate?
        /// One entry per day of the rotation, one crew per shift of the day in pattern order.
        public var days: [[String]]

        /// A rotation whose day 0 is `anchor` (nil for a cycle).
        public init(anchor: LocalDate?, days: [[String]]) {
            self.anchor = anchor
            self.days = days
        }

        /// The crew on shift `slot` of rotation day `day` (counted from the anchor, any sign).
        func crew(day: Int64, slot: Int) -> String {
            days[Int(floorDivMod(day, Int64(days.count)).remainder)][slot]
        }
    }

    /// Why a pattern or rotation cannot be used. `index` is the position of the offending shift (daily) or name
    /// (cycle); `day` and `slot` index the rotation.
    public enum Problem: Error, Hashable, CustomStringConvertible {
        /// The time-zone database has no such zone.
        case unknownTimeZone(String)
        /// A pattern without shifts, or a cycle without names.
        case noShifts
        /// A name that is empty or has characters other than `A-Z a-z 0-9 _ -`.
        case invalidName(index: Int, name: String)
        /// A name used before in the same pattern.
        case duplicateName(index: Int, name: String)
        /// A daily start at or before the previous one's.
        case startNotAfterPrevious(index: Int, start: TimeOfDay, previous: TimeOfDay)
        /// A cycle under one second.
        case cycleTooShort(Duration)
        /// A cycle with a fraction of a second.
        case cycleNotWholeSeconds(Duration)
        /// A cycle anchor with a fraction of a second.
        case anchorNotWholeSecond(UTCInstant)
        /// A rotation without days.
        case rotationEmpty
        /// A rotation over a daily pattern without its anchor date.
        case rotationNeedsAnchorDate
        /// A rotation over a cycle with an anchor date (its day 0 is the round starting at the cycle's anchor).
        case rotationAnchorDateInCycle
        /// A rotation day without exactly one crew per shift of the day.
        case rotationDayLength(day: Int, crews: Int, shifts: Int)
        /// An empty crew name.
        case emptyCrew(day: Int, slot: Int)

        /// What is wrong, in words fit for a configuration error.

        public var description: String {
            switch self {
            case .unknownTimeZone(let id):
                "unknown time zone \"\(id)\": not in \(ZoneDatabase.directory) (expected an IANA name such as "
                    + "Asia/Shanghai or Europe/Berlin; is the tzdata package installed?)"
            case .noShifts: "a pattern needs at least one shift"
            case .invalidName(_, let name):
                "shift name \"\(name)\" must be non-empty and use only A-Z a-z 0-9 _ - (it appears in ids and topics)"
            case .duplicateName(_, let name): "shift name \"\(name)\" is used more than once"
            case .startNotAfterPrevious(_, let start, let previous):
                "start \(start) is not after the previous shift's start \(previous): list the shifts in the order "
                    + "of the day, the first one earliest (the last one ends at the first one's start the next day)"
            case .cycleTooShort(let d): "a cycle of \(d) is too short (at least 1s)"
            case .cycleNotWholeSeconds(let d): "a cycle of \(d) is not a whole number of seconds"
            case .anchorNotWholeSecond(let t): "the anchor \(t) is not on a whole second"
            case .rotationEmpty: "a crew rotation needs at least one day"
            case .rotationNeedsAnchorDate: "a crew rotation over a daily pattern needs the local date its first day falls on"
            case .rotationAnchorDateInCycle:
                "a crew rotation over a cycle starts at the cycle's anchor; it takes no anchor date"
            case .rotationDayLength(let day, let crews, let shifts):
                "rotation day \(day + 1) lists \(crews) crew\(crews == 1 ? "" : "s") but the pattern has \(shifts) "
                    + "shift\(shifts == 1 ? "" : "s") a day (one crew per shift, in the pattern's order)"
            case .emptyCrew(let day, let slot): "rotation day \(day + 1), shift \(slot + 1): the crew name is empty"
            }
        }
    }

    /// What the calendar repeats.
    public let pattern: Pattern
    /// The crew rotation, if the plant rotates crews.
    public let crews: CrewRotation?
    /// The compiled pattern.
    let rules: Rules

    enum Rules: Sendable, Hashable {
        /// The zone, the names and the start times as seconds since local midnight.
        case daily(ZoneRules, names: [String], starts: [Int64])
        case cycle(lengthNanos: Int64, anchorNanos: Int64, names: [String])
    }

    /// A daily pattern in `timeZone` (an IANA identifier). Throws the first of `problems(timeZone:shifts:crews:)`.
    public init(timeZone: String, shifts: [DailyShift], crews: CrewRotation? = nil) throws(Problem) {
        if let first = Self.problems(timeZone: timeZone, shifts: shifts, crews: crews).first { throw first }
        guard let zone = ZoneRules(identifier: timeZone) else { throw .unknownTimeZone(timeZone) }
        pattern = .daily(timeZone: timeZone, shifts: shifts)
        self.crews = crews
        rules = .daily(zone, names: shifts.map(\.name), starts: shifts.map { Int64($0.start.secondsSinceMidnight) })
    }

    /// A fixed cycle of `length` from `anchor`, named `names` in turn. Throws the first of
    /// `problems(cycle:anchor:names:crews:)`.
    public init(cycle length: Duration, anchor: UTCInstant, names: [String] = ["A", "B", "C"],
                crews: CrewRotation? = nil) throws(Problem) {
        if let first = Self.problems(cycle: length, anchor: anchor, names: names, crews: crews).first { throw first }
        pattern = .cycle(length: length, anchor: anchor, names: names)
        self.crews = crews
        rules = .cycle(lengthNanos: length.components.seconds * 1_000_000_000, anchorNanos: anchor.nanosecondsSinceEpoch,
                       names: names)
    }

    /// The default calendar: three 8-hour shifts A 00:00, B 08:00, C 16:00 in Asia/Shanghai, no crews.
    public static let standard: ShiftCalendar = {
        let shifts = [("A", 0), ("B", 8), ("C", 16)].map { DailyShift(name: $0.0, start: TimeOfDay(hours: $0.1, minutes: 0)!) }
        do {
            return try ShiftCalendar(timeZone: "Asia/Shanghai", shifts: shifts)
        } catch {
            // ShiftCalendar.decode checks that the database has Asia/Shanghai before it hands out this calendar; a
            // program that uses it without a configuration needs tzdata installed like the daemon does.
            fatalError("the default shift calendar cannot be built: \(error)")
        }
    }()

    /// Everything wrong with a daily pattern, in order: the zone is unknown; there are no shifts; a name is not
    /// `[A-Za-z0-9_-]+` or is repeated; a start is not after the one before it; the rotation does not fit (no
    /// days, no anchor date, a day without exactly one crew per shift, an empty crew name).
    public static func problems(timeZone: String, shifts: [DailyShift], crews: CrewRotation?) -> [Problem] {
        problems(timeZone: timeZone, names: shifts.map(\.name), starts: shifts.map(\.start), crews: crews)
    }

    /// As above, with starts that could not be read (nil) passed over.
    static func problems(timeZone: String, names: [String], starts: [TimeOfDay?], crews: CrewRotation?) -> [Problem] {
        var out: [Problem] = ZoneRules(identifier: timeZone) == nil ? [.unknownTimeZone(timeZone)] : []
        out += problems(names: names)
        out += problems(starts: starts)
        if let crews {
            if crews.anchor == nil { out.append(.rotationNeedsAnchorDate) }
            out += problems(rotation: crews.days, shiftsPerDay: names.count)
        }
        return out
    }

    /// Everything wrong with a cycle: a length that is not a whole number of seconds or is under 1s, an anchor not
    /// on a whole second, bad names (as for a daily pattern), a rotation that does not fit (it takes no anchor date
    /// and needs one crew per name each day).
    public static func problems(cycle length: Duration, anchor: UTCInstant, names: [String], crews: CrewRotation?) -> [Problem] {
        var out: [Problem] = []
        let (seconds, atto) = length.components
        if atto != 0 {
            out.append(.cycleNotWholeSeconds(length))
        } else if seconds < 1 {
            out.append(.cycleTooShort(length))
        }
        if anchor.nanosecondsSinceEpoch % 1_000_000_000 != 0 { out.append(.anchorNotWholeSecond(anchor)) }
        out += problems(names: names)
        if let crews {
            if crews.anchor != nil { out.append(.rotationAnchorDateInCycle) }
            out += problems(rotation: crews.days, shiftsPerDay: names.count)
        }
        return out
    }

    static func problems(names: [String]) -> [Problem] {
        if names.isEmpty { return [.noShifts] }
        var seen = Set<String>()
        return names.enumerated().compactMap { i, name in
            if !isPlainName(name) { return .invalidName(index: i, name: name) }
            return seen.insert(name).inserted ? nil : .duplicateName(index: i, name: name)
        }
    }

    /// Each start must be after the one before it; nil starts (not parsed) are passed over.
    static func problems(starts: [TimeOfDay?]) -> [Problem] {
        var out: [Problem] = []
        for i in starts.indices.dropFirst() {
            if let start = starts[i], let previous = starts[i - 1], start <= previous {
                out.append(.startNotAfterPrevious(index: i, start: start, previous: previous))
            }
        }
        return out
    }

    static func problems(rotation days: [[String]], shiftsPerDay: Int) -> [Problem] {
        if days.isEmpty { return [.rotationEmpty] }
        var out: [Problem] = []
        for (d, day) in days.enumerated() {
            if day.count != shiftsPerDay { out.append(.rotationDayLength(day: d, crews: day.count, shifts: shiftsPerDay)) }
            out += day.indices.filter { day[$0].isEmpty }.map { .emptyCrew(day: d, slot: $0) }
        }
        return out
    }
}

// MARK: - Lookups

extension ShiftCalendar {
    /// The shift that `t` falls in (start ≤ t < end). Every instant is in exactly one shift.
    ///
    /// A few time-zone look-ups per call (none for a cycle): on the hot path use a `ShiftCursor`.
    public func shift(containing t: UTCInstant) -> Shift {
        switch rules {
        case .daily(let zone, let names, let starts):
            return dailyShift(containing: t, zone: zone, names: names, starts: starts)
        case .cycle(let length, let anchor, _):
            return cycleShift(index: floorDivMod(t.nanosecondsSinceEpoch - anchor, length).quotient)
        }
    }

    /// The shift that starts where `shift` ends.
    public func shift(after shift: Shift) -> Shift { self.shift(containing: shift.end) }

    /// The shift that ends where `shift` starts.
    public func shift(before shift: Shift) -> Shift {
        self.shift(containing: UTCInstant(nanosecondsSinceEpoch: shift.start.nanosecondsSinceEpoch - 1))
    }

    /// The shift with this id, or nil if the calendar has no such shift: an unknown name, a date that does not
    /// parse, a cycle id whose time is not a start of that name, or a daily shift that does not happen (its start
    /// and the next one's fall in the same daylight-saving gap).
    public func shift(id: ShiftID) -> Shift? {
        guard let date = LocalDate(id.localDate) else { return nil }
        switch rules {
        case .daily(let zone, let names, let starts):
            guard let slot = names.firstIndex(of: id.name) else { return nil }
            let s = DaySlot(day: date.daysSinceEpoch, slot: slot)
            let start = s.start(zone, starts), end = s.next(count: names.count).start(zone, starts)
            guard start < end else { return nil }
            return makeDaily(s, start: start, end: end, zone: zone, names: names)
        case .cycle(let length, let anchor, let names):
            guard let dash = id.name.lastIndex(of: "-"), names.contains(String(id.name[..<dash])),
                let time = Self.compactTime(id.name[id.name.index(after: dash)...])
            else { return nil }
            let start = (date.daysSinceEpoch * 86_400 + Int64(time.secondsSinceMidnight)) * 1_000_000_000
            let (k, r) = floorDivMod(start - anchor, length)
            guard r == 0 else { return nil }
            let shift = cycleShift(index: k)
            return shift.id == id ? shift : nil
        }
    }

    /// The shifts that share at least an instant with `range`, in order (none for an empty range).
    public func shifts(overlapping range: Range<UTCInstant>) -> [Shift] {
        guard !range.isEmpty else { return [] }
        var out = [shift(containing: range.lowerBound)]
        while let last = out.last, last.end < range.upperBound { out.append(shift(after: last)) }
        return out
    }

    /// A cursor for looking up shifts of this calendar in (mostly) increasing time.
    public func cursor() -> ShiftCursor { ShiftCursor(self) }
}

// MARK: - Local time

extension ShiftCalendar {
    /// The calendar's offset from UTC at `t`, in seconds: the zone's for a daily pattern, 0 for a cycle (cycles run
    /// in UTC).
    public func offsetSeconds(at t: UTCInstant) -> Int {
        switch rules {
        case .daily(let zone, _, _): zone.offset(at: t)
        case .cycle: 0
        }
    }

    /// `t` on the calendar's clock, in the form of `Shift.localStart`: RFC 3339 with the offset in force
    /// (`2026-11-23T08:00:00.000+08:00`; `…Z` for a cycle).
    public func localTimestamp(_ t: UTCInstant) -> String { RFC3339.format(t, offsetSeconds: offsetSeconds(at: t)) }

    /// The date and the time of day (to the second, rounded down) that the calendar's clock shows at `t`.
    public func localDateAndTime(_ t: UTCInstant) -> (date: LocalDate, time: TimeOfDay) {
        let local = floorDivMod(t.nanosecondsSinceEpoch, 1_000_000_000).quotient + Int64(offsetSeconds(at: t))
        let (day, second) = floorDivMod(local, 86_400)
        let time = TimeOfDay(hours: Int(second / 3600), minutes: Int(second / 60 % 60), seconds: Int(second % 60))!
        return (LocalDate(daysSinceEpoch: day), time)
    }
}

// MARK: - Daily patterns

/// Shift `slot` (in pattern order) of local day `day`.
struct DaySlot: Hashable {
    var day: Int64
    var slot: Int

    func next(count: Int) -> DaySlot {
        slot + 1 < count ? DaySlot(day: day, slot: slot + 1) : DaySlot(day: day + 1, slot: 0)
    }

    /// Its start (see `ZoneRules.firstInstant(atOrAfterLocal:)`).
    func start(_ zone: ZoneRules, _ starts: [Int64]) -> UTCInstant {
        UTCInstant(secondsSinceEpoch: zone.firstInstant(atOrAfterLocal: day * 86_400 + starts[slot]))
    }
}

extension ShiftCalendar {
    private func dailyShift(containing t: UTCInstant, zone: ZoneRules, names: [String], starts: [Int64]) -> Shift {
        // The shifts of t's local day usually hold the answer, or else the last one of the day before; walk back
        // whole days until a shift starts at or before t, then forward until the next one starts after t (which
        // also steps over a shift that does not happen).
        var s = DaySlot(day: zone.localDay(of: t), slot: 0)
        var start = s.start(zone, starts)
        while start > t {
            s = DaySlot(day: s.day - 1, slot: 0)
            start = s.start(zone, starts)
        }
        while true {
            let n = s.next(count: names.count)
            let end = n.start(zone, starts)
            if end > t { return makeDaily(s, start: start, end: end, zone: zone, names: names) }
            s = n
            start = end
        }
    }

    private func makeDaily(_ s: DaySlot, start: UTCInstant, end: UTCInstant, zone: ZoneRules, names: [String]) -> Shift {
        let date = LocalDate(daysSinceEpoch: s.day)
        let crew = crews.map { $0.crew(day: s.day - ($0.anchor?.daysSinceEpoch ?? 0), slot: s.slot) }
        return Shift(id: ShiftID(localDate: date.description, name: names[s.slot]), start: start, end: end, crew: crew,
                     localStart: RFC3339.format(start, offsetSeconds: zone.offset(at: start)),
                     localEnd: RFC3339.format(end, offsetSeconds: zone.offset(at: end)))
    }
}

// MARK: - Cycles

extension ShiftCalendar {
    /// The `k`-th shift of the cycle (0 starts at the anchor).
    private func cycleShift(index k: Int64) -> Shift {
        guard case .cycle(let length, let anchor, let names) = rules else { preconditionFailure("not a cycle") }
        let start = UTCInstant(nanosecondsSinceEpoch: anchor + k * length)
        let end = UTCInstant(nanosecondsSinceEpoch: start.nanosecondsSinceEpoch + length)
        let (round, slot) = floorDivMod(k, Int64(names.count))
        let (day, second) = floorDivMod(start.nanosecondsSinceEpoch / 1_000_000_000, 86_400)
        let time = TimeOfDay(hours: Int(second / 3600), minutes: Int(second / 60 % 60), seconds: Int(second % 60))!
        let name = names[Int(slot)] + "-" + Self.compactTime(time)
        return Shift(id: ShiftID(localDate: LocalDate(daysSinceEpoch: day).description, name: name),
                     start: start, end: end, crew: crews?.crew(day: round, slot: Int(slot)),
                     localStart: RFC3339.format(start, offsetSeconds: 0), localEnd: RFC3339.format(end, offsetSeconds: 0))
    }

    /// `HHMMSS`, the time part of a cycle shift's name.
    static func compactTime(_ t: TimeOfDay) -> String {
        let s = t.secondsSinceMidnight
        return pad2(s / 3600) + pad2(s / 60 % 60) + pad2(s % 60)
    }

    static func compactTime(_ text: Substring) -> TimeOfDay? {
        let u = Array(text.utf8)
        guard u.count == 6 else { return nil }
        return TimeOfDay(String(decoding: u[0..<2] + [0x3A] + u[2..<4] + [0x3A] + u[4..<6], as: UTF8.self))
    }
}
