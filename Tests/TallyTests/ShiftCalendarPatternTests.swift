import KilnTallyCore
import Tally
import Testing

/// An instant written in RFC 3339 (the parser is checked against epoch numbers in ShiftCalendarTimeTests).
func utc(_ text: String) -> UTCInstant {
    guard let t = UTCInstant(rfc3339: text) else { fatalError("bad instant in a test: \(text)") }
    return t
}

/// A daily pattern from `[(name, "HH:MM")]`.
func daily(_ zone: String, _ shifts: [(String, String)], crews: ShiftCalendar.CrewRotation? = nil) throws -> ShiftCalendar {
    try ShiftCalendar(timeZone: zone, shifts: shifts.map { ShiftCalendar.DailyShift(name: $0.0, start: TimeOfDay($0.1)!) },
                      crews: crews)
}

/// The patterns the tests use.
enum Patterns {
    static let eights = [("A", "00:00"), ("B", "08:00"), ("C", "16:00")]
    static let from0630 = [("A", "06:30"), ("B", "14:30"), ("C", "22:30")]
    static let twelves = [("D", "08:00"), ("N", "20:00")]
    static let unequal = [("early", "07:00"), ("late", "15:00:30"), ("night", "23:30")]
    static let oneADay = [("day", "06:00")]
    static let from0230 = [("A", "02:30"), ("B", "10:30"), ("C", "18:30")]
    static let twoInOneGap = [("X", "02:00"), ("Y", "02:30"), ("Z", "12:00")]
}

/// One shift worked out by hand: the calendar, an instant inside the shift, and everything about the shift.
struct ShiftCase: Sendable, CustomTestStringConvertible {
    var zone: String
    var pattern: [(String, String)]
    var at: String
    var id: String
    var start: String
    var end: String
    var localStart: String
    var localEnd: String
    var hours: Double

    init(_ zone: String, _ pattern: [(String, String)], at: String, _ id: String, _ start: String, _ end: String,
         _ localStart: String, _ localEnd: String, hours: Double) {
        (self.zone, self.pattern, self.at, self.id, self.start, self.end) = (zone, pattern, at, id, start, end)
        (self.localStart, self.localEnd, self.hours) = (localStart, localEnd, hours)
    }

    var testDescription: String { "\(zone) \(id) \(localStart) – \(localEnd)" }

    /// The shift containing `at`, its first and last nanosecond, and its id all give the expected shift; its
    /// neighbours start and end where it ends and starts.
    func check() throws {
        let cal = try daily(zone, pattern)
        let s = cal.shift(containing: utc(at))
        #expect(s.id.description == id)
        #expect(s.start == utc(start), "start")
        #expect(s.end == utc(end), "end")
        #expect(s.localStart == localStart)
        #expect(s.localEnd == localEnd)
        #expect(s.length == .seconds(Int64((hours * 3600).rounded())))
        #expect(cal.shift(containing: s.start) == s)
        #expect(cal.shift(containing: UTCInstant(nanosecondsSinceEpoch: s.end.nanosecondsSinceEpoch - 1)) == s)
        #expect(cal.shift(id: s.id) == s)
        #expect(cal.shift(after: s).start == s.end)
        #expect(cal.shift(before: s).end == s.start)
    }
}

@Suite("Shift calendar: daily patterns in Asia/Shanghai (UTC+8, no daylight saving)")
struct ShiftCalendarPatternTests {
    /// Asia/Shanghai is UTC+8 all year: local = UTC + 8 h.
    static let cases = [
        // Three 8-hour shifts from 00:00: 18:15 local is C; 00:00 local starts A of the new date.
        ShiftCase("Asia/Shanghai", Patterns.eights, at: "2026-11-23T10:15:00Z", "2026-11-23/C", "2026-11-23T08:00:00Z",
                  "2026-11-23T16:00:00Z", "2026-11-23T16:00:00.000+08:00", "2026-11-24T00:00:00.000+08:00", hours: 8),
        ShiftCase("Asia/Shanghai", Patterns.eights, at: "2026-11-23T16:00:00Z", "2026-11-24/A", "2026-11-23T16:00:00Z",
                  "2026-11-24T00:00:00Z", "2026-11-24T00:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00", hours: 8),
        ShiftCase("Asia/Shanghai", Patterns.eights, at: "2026-11-23T03:00:00Z", "2026-11-23/B", "2026-11-23T00:00:00Z",
                  "2026-11-23T08:00:00Z", "2026-11-23T08:00:00.000+08:00", "2026-11-23T16:00:00.000+08:00", hours: 8),
        // From 06:30: 03:00 on the 24th (local) is still the night shift that started on the 23rd …
        ShiftCase("Asia/Shanghai", Patterns.from0630, at: "2026-11-23T19:00:00Z", "2026-11-23/C", "2026-11-23T14:30:00Z",
                  "2026-11-23T22:30:00Z", "2026-11-23T22:30:00.000+08:00", "2026-11-24T06:30:00.000+08:00", hours: 8),
        // … and 06:00 on the 23rd the one that started on the 22nd.
        ShiftCase("Asia/Shanghai", Patterns.from0630, at: "2026-11-22T22:00:00Z", "2026-11-22/C", "2026-11-22T14:30:00Z",
                  "2026-11-22T22:30:00Z", "2026-11-22T22:30:00.000+08:00", "2026-11-23T06:30:00.000+08:00", hours: 8),
        ShiftCase("Asia/Shanghai", Patterns.from0630, at: "2026-11-23T00:00:00Z", "2026-11-23/A", "2026-11-22T22:30:00Z",
                  "2026-11-23T06:30:00Z", "2026-11-23T06:30:00.000+08:00", "2026-11-23T14:30:00.000+08:00", hours: 8),
        // Two 12-hour shifts from 08:00 (四班两倒): 04:00 on the 24th is the night shift of the 23rd.
        ShiftCase("Asia/Shanghai", Patterns.twelves, at: "2026-11-23T00:00:00Z", "2026-11-23/D", "2026-11-23T00:00:00Z",
                  "2026-11-23T12:00:00Z", "2026-11-23T08:00:00.000+08:00", "2026-11-23T20:00:00.000+08:00", hours: 12),
        ShiftCase("Asia/Shanghai", Patterns.twelves, at: "2026-11-23T20:00:00Z", "2026-11-23/N", "2026-11-23T12:00:00Z",
                  "2026-11-24T00:00:00Z", "2026-11-23T20:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00", hours: 12),
        // Unequal lengths, a start with seconds: 07:00 → 15:00:30 → 23:30 → 07:00.
        ShiftCase("Asia/Shanghai", Patterns.unequal, at: "2026-11-23T00:00:00Z", "2026-11-23/early", "2026-11-22T23:00:00Z",
                  "2026-11-23T07:00:30Z", "2026-11-23T07:00:00.000+08:00", "2026-11-23T15:00:30.000+08:00", hours: 8 + 30.0 / 3600),
        ShiftCase("Asia/Shanghai", Patterns.unequal, at: "2026-11-23T15:29:59Z", "2026-11-23/late", "2026-11-23T07:00:30Z",
                  "2026-11-23T15:30:00Z", "2026-11-23T15:00:30.000+08:00", "2026-11-23T23:30:00.000+08:00", hours: 8 + 1770.0 / 3600),
        ShiftCase("Asia/Shanghai", Patterns.unequal, at: "2026-11-23T15:30:00Z", "2026-11-23/night", "2026-11-23T15:30:00Z",
                  "2026-11-23T23:00:00Z", "2026-11-23T23:30:00.000+08:00", "2026-11-24T07:00:00.000+08:00", hours: 7.5),
        // One shift a day lasts the whole day: 05:59:59 local on the 23rd is the shift of the 22nd.
        ShiftCase("Asia/Shanghai", Patterns.oneADay, at: "2026-11-22T21:59:59Z", "2026-11-22/day", "2026-11-21T22:00:00Z",
                  "2026-11-22T22:00:00Z", "2026-11-22T06:00:00.000+08:00", "2026-11-23T06:00:00.000+08:00", hours: 24),
    ]

    @Test("three 8-hour shifts from 00:00, three from 06:30, two 12-hour from 08:00, unequal, one a day", arguments: cases)
    func shanghai(_ c: ShiftCase) throws { try c.check() }

    @Test("the default calendar is three 8-hour shifts from 00:00 in Asia/Shanghai")
    func standard() throws {
        #expect(try daily("Asia/Shanghai", Patterns.eights) == ShiftCalendar.standard)
        #expect(ShiftCalendar.standard.pattern == .daily(timeZone: "Asia/Shanghai", shifts: [
            .init(name: "A", start: TimeOfDay(hours: 0, minutes: 0)!), .init(name: "B", start: TimeOfDay(hours: 8, minutes: 0)!),
            .init(name: "C", start: TimeOfDay(hours: 16, minutes: 0)!),
        ]))
        #expect(ShiftCalendar.standard.crews == nil)
    }

    @Test func neighboursIdsAndRanges() throws {
        let cal = try daily("Asia/Shanghai", Patterns.from0630)
        let b = cal.shift(containing: utc("2026-11-23T08:00:00Z"))
        #expect(b.id.description == "2026-11-23/B")
        #expect(cal.shift(before: b).id.description == "2026-11-23/A")
        #expect(cal.shift(after: b).id.description == "2026-11-23/C")
        #expect(cal.shift(after: cal.shift(after: b)).id.description == "2026-11-24/A")
        #expect(cal.shift(before: cal.shift(before: b)).id.description == "2026-11-22/C")
        #expect(cal.shift(id: ShiftID("2026-11-23/B")!) == b)
        #expect(cal.shift(id: ShiftID("2026-11-23/C")!)?.start == utc("2026-11-23T14:30:00Z"))
        #expect(cal.shift(id: ShiftID("2026-11-23/X")!) == nil)
        #expect(cal.shift(id: ShiftID("2026-02-30/A")!) == nil)

        // [10:00 local on the 23rd, 07:00 local on the 24th) touches A, B, C of the 23rd and A of the 24th.
        #expect(cal.shifts(overlapping: utc("2026-11-23T02:00:00Z")..<utc("2026-11-23T23:00:00Z")).map(\.id.description)
                == ["2026-11-23/A", "2026-11-23/B", "2026-11-23/C", "2026-11-24/A"])
        // Ending exactly where a shift starts does not touch it; a range inside one shift gives that shift.
        #expect(cal.shifts(overlapping: utc("2026-11-23T06:30:00Z")..<utc("2026-11-23T14:30:00Z")).map(\.id.description)
                == ["2026-11-23/B"])
        #expect(cal.shifts(overlapping: utc("2026-11-23T07:00:00Z")..<utc("2026-11-23T07:00:01Z")) == [b])
        #expect(cal.shifts(overlapping: utc("2026-11-23T07:00:00Z")..<utc("2026-11-23T07:00:00Z")).isEmpty)
    }

    @Test("crew rotation 四班三倒: four crews, three shifts, eight days, from an anchor date")
    func crewRotation() throws {
        let rotation = [
            ["甲", "乙", "丙"], ["甲", "乙", "丙"], ["丁", "甲", "乙"], ["丁", "甲", "乙"],
            ["丙", "丁", "甲"], ["丙", "丁", "甲"], ["乙", "丙", "丁"], ["乙", "丙", "丁"],
        ]
        let cal = try daily("Asia/Shanghai", Patterns.from0630,
                            crews: .init(anchor: LocalDate("2026-11-20"), days: rotation))
        // From 2026-11-19/A (the day before the anchor: rotation day 8) through 2026-11-28/C (day 9 = day 1 again).
        var s = try #require(cal.shift(id: ShiftID("2026-11-19/A")!))
        var crews: [String] = []
        var ids: [String] = []
        while s.id.localDate <= "2026-11-28" {
            crews.append(s.crew ?? "-")
            ids.append(s.id.description)
            s = cal.shift(after: s)
        }
        #expect(ids.count == 30 && ids.first == "2026-11-19/A" && ids.last == "2026-11-28/C")
        #expect(crews.joined() == "乙丙丁" + "甲乙丙甲乙丙丁甲乙丁甲乙丙丁甲丙丁甲乙丙丁乙丙丁" + "甲乙丙")
        // 03:00 on the 24th (local) is the night shift of the 23rd, rotation day 4: crew 乙.
        #expect(cal.shift(containing: utc("2026-11-23T19:00:00Z")).crew == "乙")
        // Eight days before the anchor is rotation day 1 again.
        #expect(cal.shift(id: ShiftID("2026-11-12/B")!)?.crew == "乙")
        #expect(try daily("Asia/Shanghai", [("A", "00:00")]).shift(containing: utc("2026-11-23T00:00:00Z")).crew == nil)
    }
}
