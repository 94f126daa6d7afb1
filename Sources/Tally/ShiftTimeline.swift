import KilnTallyCore

/// The shift calendars in force over time, so that a changed calendar can take effect at a chosen instant (the next
/// shift boundary) without renaming or moving the shifts before it.
///
/// **Eras.** The first calendar is in force from the beginning of time; each change starts an era at its instant
/// `B`, and eras start at strictly increasing instants. An instant belongs to the era in force at it, and its shift
/// is that era's calendar's shift, cut to the era:
/// - A shift that started before the era's `B` starts at `B` instead (and `localStart` is `B` on the era's
///   calendar's clock). Its id is the local date of `B` and the name followed by `B`'s local time as `-HHMMSS`
///   (the form cycle ids use): `2026-11-23/A-100000`. Its crew is the calendar's.
/// - A shift that the next era begins inside ends at that era's `B` (`end`, `localEnd` and `length` say so); its
///   id stays.
/// - A shift that starts in the era keeps its calendar id, unless a shift of an earlier era already has that id;
///   then it takes the suffix of its own start: with A/B/C at 00:00/08:00/16:00 changed at 08:00 to A 08:00 /
///   B 20:00, the shift from 08:00 is `2026-11-23/A-080000` because `2026-11-23/A` ran from 00:00 to 08:00.
///
/// So every instant is in exactly one shift, each shift starts where the one before it ends, and no two shifts
/// share an id. Precisely: a shift of a later era takes its calendar id (or, if cut, the cut id) followed by as many
/// `-HHMMSS` of its start as it takes for no shift of an earlier era to have that id (once, except in contrived
/// cases: changes minutes apart, or calendars in different zones). Ids are unique as long as no shift name itself
/// ends in a dash and six digits (a suffixed id could then be another shift's id within one era).
///
/// A lookup costs one calendar lookup, and for shifts that start less than `idWindow` after a change a few more per
/// era in that window (to see which ids are taken); the engine asks once per shift, not per reading.
///
/// A value, Codable (the engine keeps it in its checkpoint), as a JSON array of eras in order:
///
/// ```json
/// [{"from": null, "calendar": {"daily": {"time_zone": "Asia/Shanghai", "shifts": [{"name": "A", "start": "00:00"}, …]}}},
///  {"from": {"nanosecondsSinceEpoch": 1795392000000000000},
///   "calendar": {"daily": {"time_zone": "Asia/Shanghai", "shifts": [{"name": "A", "start": "08:00"}, …]}}}]
/// ```
public struct ShiftTimeline: Sendable, Hashable {
    /// A calendar and the instant it took effect at (nil for the first era: always).
    struct Era: Sendable, Hashable {
        var from: UTCInstant?
        var calendar: ShiftCalendar
    }

    /// In order; the first one's `from` is nil, the others' strictly increase.
    private(set) var eras: [Era]

    /// How far back from a shift's start a shift of an earlier era could have the same local date (and so the same
    /// id): 4 days, more than the 74 hours that zone offsets (−12 h to +14 h) and a day-long daylight-saving gap allow.
    public static let idWindow: Duration = .seconds(4 * 86_400)
    private static let windowNanos: Int64 = 4 * 86_400 * 1_000_000_000

    /// `calendar` in force at all times.
    public init(_ calendar: ShiftCalendar) { eras = [Era(from: nil, calendar: calendar)] }

    /// The calendar in force from `instant` on. Eras starting at or after `instant` are replaced (a second change
    /// before the first took effect supersedes it). Changing to the calendar that is then in force adds no era: it
    /// changes nothing, and cutting a shift in two for it would only rename shifts.
    public mutating func change(to calendar: ShiftCalendar, at instant: UTCInstant) {
        eras.removeAll { era in era.from.map { $0 >= instant } ?? false }
        if eras[eras.count - 1].calendar != calendar { eras.append(Era(from: instant, calendar: calendar)) }
    }

    /// The calendar in force at `t`.
    public func calendar(at t: UTCInstant) -> ShiftCalendar { eras[eraIndex(at: t)].calendar }

    /// The last era's calendar: the one in force from the last change on.
    public var latest: ShiftCalendar { eras[eras.count - 1].calendar }

    /// The instants at which eras start, in order, without the first era (which has no start). Empty when one
    /// calendar has always been in force.
    public var changes: [UTCInstant] { eras.compactMap(\.from) }

    /// Forgets eras the answers for `t` and later no longer depend on, so the checkpoint stays small: those that
    /// ended at or before `idWindow` before the start of the shift containing `t`. Not simply those that ended
    /// before `t`: a shift takes its id in view of the earlier eras' shifts within that window, so forgetting the era
    /// that ended at 08:00 would turn `2026-11-23/A-080000` back into `2026-11-23/A`, an id already reported. The
    /// first era kept becomes the first era, in force from the beginning of time (it started at least `idWindow`
    /// before, so nothing from `t` on changes). Shifts containing `t` or later instants are the same afterwards; earlier ones may
    /// not be. Once a change is more than `idWindow` (and a shift) in the past, the timeline is again
    /// `ShiftTimeline(latest)`.
    public mutating func forget(before t: UTCInstant) {
        let cutoff = shift(containing: t).start.nanosecondsSinceEpoch - Self.windowNanos
        var dropped = 0
        while dropped + 1 < eras.count, eras[dropped + 1].from!.nanosecondsSinceEpoch <= cutoff { dropped += 1 }
        guard dropped > 0 else { return }
        eras.removeFirst(dropped)
        eras[0].from = nil
    }

    /// The index of the era in force at `t`.
    private func eraIndex(at t: UTCInstant) -> Int {
        var k = eras.count - 1
        while let from = eras[k].from, t < from { k -= 1 }
        return k
    }
}

// MARK: - Lookups

extension ShiftTimeline {
    /// The shift that `t` falls in (start ≤ t < end), cut to its era; see the type.
    public func shift(containing t: UTCInstant) -> Shift {
        let k = eraIndex(at: t)
        let calendar = eras[k].calendar
        let own = calendar.shift(containing: t)
        var s = own
        if let from = eras[k].from, own.start < from {
            s.start = from
            s.localStart = calendar.localTimestamp(from)
        }
        if k + 1 < eras.count, let next = eras[k + 1].from, own.end > next {
            s.end = next
            s.localEnd = calendar.localTimestamp(next)
        }
        if k > 0 { s.id = id(era: k, own: own, start: s.start) }
        return s
    }

    /// The shift that starts where `s` ends.
    public func shift(after s: Shift) -> Shift { shift(containing: s.end) }

    /// The shifts that share at least an instant with `range`, in order (none for an empty range).
    public func shifts(overlapping range: Range<UTCInstant>) -> [Shift] {
        guard !range.isEmpty else { return [] }
        var out = [shift(containing: range.lowerBound)]
        while let last = out.last, last.end < range.upperBound { out.append(shift(after: last)) }
        return out
    }
}

// MARK: - Ids across a change

extension ShiftTimeline {
    /// The id of the shift of era `k` (k > 0) that is the calendar's shift `own` cut to start at `start`: its base
    /// id (see `base`) followed by as many `-HHMMSS` of `start` as it takes for no shift of an earlier era to have it.
    ///
    /// All the shifts involved share the id's local date, so they start within 74 hours of each other: only eras
    /// that end less than `idWindow` before `start` are consulted, however deep the recursion goes.
    private func id(era k: Int, own: Shift, start: UTCInstant) -> ShiftID {
        let lower = start.nanosecondsSinceEpoch - Self.windowNanos
        // Well after the change no earlier shift can share the date: the calendar's own id.
        if own.start == start, lower >= eras[k].from!.nanosecondsSinceEpoch { return own.id }
        let (base, suffix) = Self.base(eras[k].calendar, own: own, start: start)
        var id = base
        while taken(id, beforeEra: k, startingAfter: lower) { id.name += suffix }
        return id
    }

    /// The id a shift starts from (`own` in `calendar`, starting at `start`, which is later than `own.start` if the
    /// shift was cut): its own id, or if cut the local date of `start` and the name with `start`'s `-HHMMSS`; and that
    /// suffix.
    private static func base(_ calendar: ShiftCalendar, own: Shift, start: UTCInstant) -> (ShiftID, suffix: String) {
        let (date, time) = calendar.localDateAndTime(start)
        let suffix = "-" + ShiftCalendar.compactTime(time)
        return (own.start < start ? ShiftID(localDate: date.description, name: own.id.name + suffix) : own.id, suffix)
    }

    /// Whether a shift of an era before `k`, of one that ends after `lower` (ns), has the id `id`.
    private func taken(_ id: ShiftID, beforeEra k: Int, startingAfter lower: Int64) -> Bool {
        for j in stride(from: k - 1, through: 0, by: -1) {
            guard eras[j + 1].from!.nanosecondsSinceEpoch > lower else { break }
            if era(j, has: id) { return true }
        }
        return false
    }

    /// Whether a shift of era `j` (which is not the last era) has the id `id`. Only two kinds of shift can: one
    /// that starts in the era and whose own id is `id` less some trailing `-HHMMSS` of its start, and the one cut
    /// at the era's start.
    private func era(_ j: Int, has id: ShiftID) -> Bool {
        let calendar = eras[j].calendar, from = eras[j].from, end = eras[j + 1].from!
        func actual(_ own: Shift, start: UTCInstant) -> ShiftID { j == 0 ? own.id : self.id(era: j, own: own, start: start) }
        var name = Substring(id.name), time: Substring?
        while true {
            if let own = calendar.shift(id: ShiftID(localDate: id.localDate, name: String(name))),
                from.map({ own.start >= $0 }) ?? true, own.start < end,
                time.map({ $0 == ShiftCalendar.compactTime(calendar.localDateAndTime(own.start).time) }) ?? true,
                actual(own, start: own.start) == id
            {
                return true
            }
            guard let dash = name.lastIndex(of: "-") else { break }
            let t = name[name.index(after: dash)...]
            guard t.utf8.count == 6, time.map({ $0 == t }) ?? true else { break }
            (name, time) = (name[..<dash], t)
        }
        if let from {
            let own = calendar.shift(containing: from)
            if own.start < from {
                let (base, _) = Self.base(calendar, own: own, start: from)
                if id.localDate == base.localDate, id.name.hasPrefix(base.name), actual(own, start: from) == id { return true }
            }
        }
        return false
    }
}

// MARK: - Codable

/// A JSON array of eras, `{"from": UTCInstant or null, "calendar": ShiftCalendar}`, in order; the first one's
/// `from` is null. Decoding refuses an empty array, a first era with a start and starts that do not increase.
extension ShiftTimeline: Codable {
    private enum EraKeys: String, CodingKey { case from, calendar }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        for era in eras {
            var e = c.nestedContainer(keyedBy: EraKeys.self)
            if let from = era.from { try e.encode(from, forKey: .from) } else { try e.encodeNil(forKey: .from) }
            try e.encode(era.calendar, forKey: .calendar)
        }
    }

    public init(from decoder: any Decoder) throws {
        var c = try decoder.unkeyedContainer()
        var eras: [Era] = []
        while !c.isAtEnd {
            let e = try c.nestedContainer(keyedBy: EraKeys.self)
            let from = try e.decodeIfPresent(UTCInstant.self, forKey: .from)
            let calendar = try e.decode(ShiftCalendar.self, forKey: .calendar)
            if let previous = eras.last {
                guard let from, previous.from.map({ from > $0 }) ?? true else {
                    throw DecodingError.dataCorrupted(.init(codingPath: e.codingPath + [EraKeys.from], debugDescription:
                        "era \(eras.count + 1) must start (\"from\") after the era before it"))
                }
            } else if from != nil {
                throw DecodingError.dataCorrupted(.init(codingPath: e.codingPath + [EraKeys.from], debugDescription:
                    "the first era has no start (\"from\": null): it has always been in force"))
            }
            eras.append(Era(from: from, calendar: calendar))
        }
        guard !eras.isEmpty else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a shift timeline needs at least one era"))
        }
        self.eras = eras
    }
}
