import KilnTallyCore
import Tally
import Testing

/// A year of shifts, walked with `shift(after:)`, against what the pattern and the zone's 2026 daylight-saving
/// rules say by hand: which shifts are not their nominal length (and how long they are), which starts fall in a
/// gap (and what the clock reads then). Everything else follows from the pattern alone.
struct YearCase: Sendable, CustomTestStringConvertible {
    var zone: String
    var pattern: [(String, String)]
    /// Shift id → hours, for the shifts a daylight-saving change lengthens or shortens.
    var odd: [String: Double]
    /// Shift id → local clock ("HH:MM:SS") at its start, for starts that fall in a spring-forward gap.
    var gapStarts: [String: String] = [:]

    var testDescription: String { "\(zone) " + pattern.map { "\($0.0) \($0.1)" }.joined(separator: ", ") }
}

@Suite("Shift calendar: a year of shifts (property tests)")
struct ShiftCalendarPropertyTests {
    static let years = [
        YearCase(zone: "Europe/Berlin", pattern: Patterns.eights, odd: ["2026-03-29/A": 7, "2026-10-25/A": 9]),
        YearCase(zone: "America/New_York", pattern: Patterns.eights, odd: ["2026-03-08/A": 7, "2026-11-01/A": 9]),
        YearCase(zone: "Europe/Berlin", pattern: Patterns.from0230,
                 odd: ["2026-03-28/C": 7.5, "2026-03-29/A": 7.5, "2026-10-25/A": 9], gapStarts: ["2026-03-29/A": "03:00:00"]),
        YearCase(zone: "America/Santiago", pattern: Patterns.eights, odd: ["2026-04-04/C": 9, "2026-09-06/A": 7],
                 gapStarts: ["2026-09-06/A": "01:00:00"]),
        // Lord Howe moves its clocks by half an hour: back 02:00 → 01:30 on 04-05, forward 02:00 → 02:30 on 10-04.
        YearCase(zone: "Australia/Lord_Howe", pattern: Patterns.eights, odd: ["2026-04-05/A": 8.5, "2026-10-04/A": 7.5]),
        YearCase(zone: "Asia/Shanghai", pattern: Patterns.from0630, odd: [:]),
        YearCase(zone: "America/New_York", pattern: Patterns.unequal, odd: ["2026-03-07/night": 6.5, "2026-10-31/night": 8.5]),
    ]

    @Test("after/before chain contiguously through 2026; ids, local times and lengths follow the pattern", arguments: years)
    func year(_ c: YearCase) throws {
        let cal = try daily(c.zone, c.pattern)
        let names = c.pattern.map(\.0)
        let starts = c.pattern.map { TimeOfDay($0.1)! }
        let nominal = starts.indices.map { i in
            ((i + 1 < starts.count ? starts[i + 1] : starts[0]).secondsSinceMidnight - starts[i].secondsSinceMidnight + 86_400) % 86_400
        }
        var chain = [try #require(cal.shift(id: ShiftID(localDate: "2026-01-01", name: names[0])))]
        while chain.last!.id.localDate != "2027-01-01", chain.count <= 366 * names.count {  // bounded, should a bug stall it
            chain.append(cal.shift(after: chain.last!))
        }
        let year = chain.removeLast()  // 2027-01-01's first shift: where the year ends

        #expect(chain.count == 365 * names.count)
        var day = try #require(LocalDate("2026-01-01"))
        var odd: [String: Double] = [:]
        for (n, s) in chain.enumerated() {
            let slot = n % names.count
            #expect(s.id == ShiftID(localDate: day.description, name: names[slot]))
            #expect(s.start < s.end)
            let next = n + 1 < chain.count ? chain[n + 1] : year
            #expect(s.end == next.start, "\(s.id) ends where the next starts")
            #expect(cal.shift(before: next) == s)
            #expect(cal.shift(id: s.id) == s)
            // The local start reads the pattern's time on the shift's date, unless the clock skipped it.
            let clock = c.gapStarts[s.id.description] ?? (starts[slot].description + (starts[slot].description.count == 5 ? ":00" : ""))
            #expect(s.localStart.hasPrefix(day.description + "T" + clock + ".000"), "\(s.id) \(s.localStart)")
            #expect(s.localEnd == next.localStart)
            let seconds = s.length.components.seconds
            if seconds != Int64(nominal[slot]) { odd[s.id.description] = Double(seconds) / 3600 }
            if slot == names.count - 1 { day = LocalDate(daysSinceEpoch: day.daysSinceEpoch + 1) }
        }
        #expect(odd == c.odd)
        // The year's offset is the same on both new years' days, so the shifts add up to exactly 365 days.
        #expect(year.start.nanosecondsSinceEpoch - chain[0].start.nanosecondsSinceEpoch == 365 * 86_400 * 1_000_000_000)
        #expect(cal.shifts(overlapping: chain[0].start..<year.start) == chain)

        // Random instants: the calendar and a cursor (fed in time order) find the shift of the chain they fall in.
        var random = SplitMix64(seed: 20_261_123)
        let span = UInt64(year.start.nanosecondsSinceEpoch - chain[0].start.nanosecondsSinceEpoch)
        let instants = (0..<3000).map { _ in
            UTCInstant(nanosecondsSinceEpoch: chain[0].start.nanosecondsSinceEpoch + Int64(random.next() % span))
        }.sorted()
        var cursor = cal.cursor()
        for t in instants {
            let expected = chain[chain.partitioningIndex { $0.start > t } - 1]
            #expect(expected.contains(t))
            #expect(cal.shift(containing: t) == expected)
            #expect(cursor.shift(containing: t) == expected)
        }
        #expect(cursor.calendarLookups <= chain.count)
    }
}

extension Array {
    /// The first index whose element satisfies `predicate`, for a predicate that is false then true along the array.
    func partitioningIndex(where predicate: (Element) -> Bool) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if predicate(self[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}
