import Foundation
import KilnTallyCore
import Tally
import Testing

/// A shift as the tests write it: id, start and end as RFC 3339 (any offset), local start and end as the calendar
/// formats them.
struct ExpectedShift: Equatable, CustomStringConvertible {
    var id: String, start: UTCInstant, end: UTCInstant, localStart: String, localEnd: String

    init(_ id: String, _ localStart: String, _ localEnd: String) {
        (self.id, self.localStart, self.localEnd) = (id, localStart, localEnd)
        (start, end) = (utc(localStart), utc(localEnd))
    }

    init(_ s: Shift) {
        (id, start, end, localStart, localEnd) = (s.id.description, s.start, s.end, s.localStart, s.localEnd)
    }

    var description: String { "\(id) \(localStart) – \(localEnd)" }
}

/// The shifts of `timeline` from the one containing `from`, `count` of them, walked with `shift(after:)`.
func walk(_ timeline: ShiftTimeline, from: String, count: Int) -> [Shift] {
    var out = [timeline.shift(containing: utc(from))]
    while out.count < count { out.append(timeline.shift(after: out[out.count - 1])) }
    return out
}

/// JSON with sorted keys and unescaped slashes, so that tests can spell it out.
func json<T: Encodable>(_ value: T) throws -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try e.encode(value), as: UTF8.self)
}

func roundTrip<T: Codable>(_ value: T) throws -> T {
    try JSONDecoder().decode(T.self, from: try JSONEncoder().encode(value))
}

/// 四班三倒 over A/B/C: crews 甲乙丙丁, each two days on a shift, then two days off.
let fourCrews = ShiftCalendar.CrewRotation(anchor: LocalDate("2026-11-20"), days: [
    ["甲", "丁", "丙"], ["甲", "丁", "丙"], ["乙", "甲", "丁"], ["乙", "甲", "丁"],
    ["丙", "乙", "甲"], ["丙", "乙", "甲"], ["丁", "丙", "乙"], ["丁", "丙", "乙"],
])

@Suite("Shift calendar: Codable")
struct ShiftCalendarCodableTests {
    @Test("a daily pattern with a crew rotation encodes its definition and decodes to an equal calendar")
    func dailyWithCrews() throws {
        let cal = try daily("Asia/Shanghai", [("A", "00:00"), ("B", "08:00:30"), ("C", "16:00")], crews: fourCrews)
        #expect(try json(cal) == """
            {"crews":{"anchor_date":"2026-11-20","rotation":[["甲","丁","丙"],["甲","丁","丙"],["乙","甲","丁"],\
            ["乙","甲","丁"],["丙","乙","甲"],["丙","乙","甲"],["丁","丙","乙"],["丁","丙","乙"]]},\
            "daily":{"shifts":[{"name":"A","start":"00:00"},{"name":"B","start":"08:00:30"},\
            {"name":"C","start":"16:00"}],"time_zone":"Asia/Shanghai"}}
            """)
        let back = try roundTrip(cal)
        #expect(back == cal)
        let t = utc("2026-11-24T03:00:00+08:00")
        #expect(back.shift(containing: t) == cal.shift(containing: t))
        #expect(back.shift(containing: t).crew == "丙")  // 2026-11-24/A: rotation day 4 (from 0) is 丙乙甲
        #expect(try roundTrip(ShiftCalendar.standard) == .standard)
        #expect(try json(ShiftCalendar.standard).contains("\"crews\"") == false)
    }

    @Test("a cycle encodes its length in seconds and its anchor as an instant")
    func cycle() throws {
        let cal = try ShiftCalendar(cycle: .seconds(120), anchor: utc("2026-11-23T08:00:00Z"), names: ["day", "night"],
                                    crews: .init(anchor: nil, days: [["甲", "乙"], ["丙", "丁"]]))
        #expect(try json(cal) == """
            {"crews":{"rotation":[["甲","乙"],["丙","丁"]]},"cycle":{"anchor":{"nanosecondsSinceEpoch":1795420800000000000},\
            "length_seconds":120,"names":["day","night"]}}
            """)
        #expect(try roundTrip(cal) == cal)
        #expect(try roundTrip(cal).shift(containing: utc("2026-11-23T08:07:00Z")).crew == "丁")  // round 1, night
    }

    @Test("what the validating initialisers refuse does not decode", arguments: [
        (#"{"daily":{"time_zone":"Mars/Olympus_Mons","shifts":[{"name":"A","start":"00:00"}]}}"#, "Mars/Olympus_Mons"),
        (#"{"daily":{"time_zone":"Asia/Shanghai","shifts":[{"name":"A","start":"08:00"},{"name":"B","start":"07:00"}]}}"#,
         "start 07:00 is not after the previous shift's start 08:00"),
        (#"{"daily":{"time_zone":"Asia/Shanghai","shifts":[{"name":"A","start":"00:00"}]},"crews":{"rotation":[["x"]]}}"#,
         "needs the local date"),
        (#"{"daily":{"time_zone":"Asia/Shanghai","shifts":[{"name":"A","start":"24:00"}]}}"#, "\"24:00\""),
        (#"{"cycle":{"length_seconds":0,"anchor":{"nanosecondsSinceEpoch":0},"names":["A"]}}"#, "too short"),
        (#"{"cycle":{"length_seconds":60,"anchor":{"nanosecondsSinceEpoch":1},"names":["A"]}}"#, "not on a whole second"),
        (#"{"crews":{"anchor_date":"2026-02-30","rotation":[["x"]]},"daily":{"time_zone":"UTC","shifts":[{"name":"A","start":"00:00"}]}}"#,
         "2026-02-30"),
        (#"{"daily":{"time_zone":"UTC","shifts":[]},"cycle":{"length_seconds":60,"anchor":{"nanosecondsSinceEpoch":0},"names":["A"]}}"#,
         "exactly one of"),
    ])
    func corrupt(text: String, message: String) throws {
        let error = try #require(throws: DecodingError.self) {
            try JSONDecoder().decode(ShiftCalendar.self, from: Data(text.utf8))
        }
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(error)")
            return
        }
        #expect(context.debugDescription.contains(message), "\(context.debugDescription)")
    }

    @Test("an unknown zone's message is the Problem's, and the Problem is the underlying error")
    func unknownZoneMessage() throws {
        let text = #"{"daily":{"time_zone":"Mars/Olympus_Mons","shifts":[{"name":"A","start":"00:00"}]}}"#
        let error = try #require(throws: DecodingError.self) {
            try JSONDecoder().decode(ShiftCalendar.self, from: Data(text.utf8))
        }
        guard case .dataCorrupted(let context) = error else { throw error }
        #expect(context.debugDescription == ShiftCalendar.Problem.unknownTimeZone("Mars/Olympus_Mons").description)
        #expect(context.underlyingError as? ShiftCalendar.Problem == .unknownTimeZone("Mars/Olympus_Mons"))
        #expect(context.codingPath.map(\.stringValue) == ["daily"])
    }
}

@Suite("Shift timeline: changes of calendar")
struct ShiftTimelineTests {
    let eights = try! daily("Asia/Shanghai", Patterns.eights)
    let twelves = try! daily("Asia/Shanghai", Patterns.twelves)
    let from0630 = try! daily("Asia/Shanghai", Patterns.from0630)
    /// 12-hour shifts with the 8-hour pattern's names.
    let a08b20 = try! daily("Asia/Shanghai", [("A", "08:00"), ("B", "20:00")])

    @Test("one calendar: the timeline is the calendar")
    func single() {
        let timeline = ShiftTimeline(eights)
        #expect(timeline.changes == [])
        #expect(timeline.latest == eights)
        for t in ["2026-11-23T07:59:59.999+08:00", "1970-01-01T00:00:00Z", "2026-03-29T01:00:00Z"] {
            #expect(timeline.shift(containing: utc(t)) == eights.shift(containing: utc(t)))
        }
        let range = utc("2026-11-23T00:00:00Z")..<utc("2026-11-25T00:00:00Z")
        #expect(timeline.shifts(overlapping: range) == eights.shifts(overlapping: range))
    }

    @Test("8h → 12h at 08:00 with the same names: the first new shift takes a suffix, the rest are normal")
    func sameNamesAtBoundary() {
        let change = utc("2026-11-23T08:00:00+08:00")
        var timeline = ShiftTimeline(eights)
        timeline.change(to: a08b20, at: change)
        #expect(timeline.changes == [change])
        #expect(timeline.calendar(at: UTCInstant(nanosecondsSinceEpoch: change.nanosecondsSinceEpoch - 1)) == eights)
        #expect(timeline.calendar(at: change) == a08b20)
        #expect(timeline.latest == a08b20)
        let shifts = walk(timeline, from: "2026-11-22T17:00:00+08:00", count: 5)
        #expect(shifts.map(ExpectedShift.init) == [
            .init("2026-11-22/C", "2026-11-22T16:00:00.000+08:00", "2026-11-23T00:00:00.000+08:00"),
            .init("2026-11-23/A", "2026-11-23T00:00:00.000+08:00", "2026-11-23T08:00:00.000+08:00"),
            .init("2026-11-23/A-080000", "2026-11-23T08:00:00.000+08:00", "2026-11-23T20:00:00.000+08:00"),
            .init("2026-11-23/B", "2026-11-23T20:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00"),
            .init("2026-11-24/A", "2026-11-24T08:00:00.000+08:00", "2026-11-24T20:00:00.000+08:00"),
        ])
        #expect(shifts.map(\.length) == [.seconds(8 * 3600), .seconds(8 * 3600), .seconds(12 * 3600), .seconds(12 * 3600),
                                         .seconds(12 * 3600)])
        #expect(timeline.shift(containing: utc("2026-11-23T07:59:59.999+08:00")).id.description == "2026-11-23/A")
        #expect(timeline.shift(containing: change).id.description == "2026-11-23/A-080000")
        #expect(timeline.shifts(overlapping: utc("2026-11-23T07:00:00+08:00")..<utc("2026-11-23T20:00:00.001+08:00"))
                    .map(\.id.description) == ["2026-11-23/A", "2026-11-23/A-080000", "2026-11-23/B"])
    }

    @Test("a change on a boundary of both calendars, to other names: no suffix")
    func otherNamesAtBoundary() {
        var timeline = ShiftTimeline(eights)
        timeline.change(to: twelves, at: utc("2026-11-23T08:00:00+08:00"))
        #expect(walk(timeline, from: "2026-11-23T01:00:00+08:00", count: 4).map(ExpectedShift.init) == [
            .init("2026-11-23/A", "2026-11-23T00:00:00.000+08:00", "2026-11-23T08:00:00.000+08:00"),
            .init("2026-11-23/D", "2026-11-23T08:00:00.000+08:00", "2026-11-23T20:00:00.000+08:00"),
            .init("2026-11-23/N", "2026-11-23T20:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00"),
            .init("2026-11-24/D", "2026-11-24T08:00:00.000+08:00", "2026-11-24T20:00:00.000+08:00"),
        ])
    }

    @Test("a change off the new calendar's grid: the first new shift is cut to start at the change")
    func offGrid() {
        var timeline = ShiftTimeline(eights)
        timeline.change(to: from0630, at: utc("2026-11-23T08:00:00+08:00"))
        let shifts = walk(timeline, from: "2026-11-23T01:00:00+08:00", count: 5)
        #expect(shifts.map(ExpectedShift.init) == [
            .init("2026-11-23/A", "2026-11-23T00:00:00.000+08:00", "2026-11-23T08:00:00.000+08:00"),
            .init("2026-11-23/A-080000", "2026-11-23T08:00:00.000+08:00", "2026-11-23T14:30:00.000+08:00"),
            .init("2026-11-23/B", "2026-11-23T14:30:00.000+08:00", "2026-11-23T22:30:00.000+08:00"),
            .init("2026-11-23/C", "2026-11-23T22:30:00.000+08:00", "2026-11-24T06:30:00.000+08:00"),
            .init("2026-11-24/A", "2026-11-24T06:30:00.000+08:00", "2026-11-24T14:30:00.000+08:00"),
        ])
        #expect(shifts[1].length == .seconds(6 * 3600 + 1800))
    }

    @Test("a change inside a shift of the old calendar cuts it short; its id stays")
    func insideOldShift() {
        var timeline = ShiftTimeline(eights)
        timeline.change(to: twelves, at: utc("2026-11-23T10:00:00+08:00"))
        #expect(walk(timeline, from: "2026-11-23T09:00:00+08:00", count: 3).map(ExpectedShift.init) == [
            .init("2026-11-23/B", "2026-11-23T08:00:00.000+08:00", "2026-11-23T10:00:00.000+08:00"),
            .init("2026-11-23/D-100000", "2026-11-23T10:00:00.000+08:00", "2026-11-23T20:00:00.000+08:00"),
            .init("2026-11-23/N", "2026-11-23T20:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00"),
        ])
    }

    @Test("8h → 12h and 12h → 8h at a boundary of the old calendar only: a 4-hour bridge")
    func eightToTwelveAndBack() {
        var timeline = ShiftTimeline(eights)
        timeline.change(to: twelves, at: utc("2026-11-23T16:00:00+08:00"))
        timeline.change(to: eights, at: utc("2026-11-25T20:00:00+08:00"))
        #expect(timeline.changes == [utc("2026-11-23T16:00:00+08:00"), utc("2026-11-25T20:00:00+08:00")])
        let shifts = walk(timeline, from: "2026-11-23T09:00:00+08:00", count: 11)
        #expect(shifts.map(ExpectedShift.init) == [
            .init("2026-11-23/B", "2026-11-23T08:00:00.000+08:00", "2026-11-23T16:00:00.000+08:00"),
            .init("2026-11-23/D-160000", "2026-11-23T16:00:00.000+08:00", "2026-11-23T20:00:00.000+08:00"),
            .init("2026-11-23/N", "2026-11-23T20:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00"),
            .init("2026-11-24/D", "2026-11-24T08:00:00.000+08:00", "2026-11-24T20:00:00.000+08:00"),
            .init("2026-11-24/N", "2026-11-24T20:00:00.000+08:00", "2026-11-25T08:00:00.000+08:00"),
            .init("2026-11-25/D", "2026-11-25T08:00:00.000+08:00", "2026-11-25T20:00:00.000+08:00"),
            // Back to 8 hours: C of the 25th started at 16:00, so it is cut to 20:00 and named by it. A, B and C of
            // the 23rd ran under the old era, but those of the 26th did not: no suffix.
            .init("2026-11-25/C-200000", "2026-11-25T20:00:00.000+08:00", "2026-11-26T00:00:00.000+08:00"),
            .init("2026-11-26/A", "2026-11-26T00:00:00.000+08:00", "2026-11-26T08:00:00.000+08:00"),
            .init("2026-11-26/B", "2026-11-26T08:00:00.000+08:00", "2026-11-26T16:00:00.000+08:00"),
            .init("2026-11-26/C", "2026-11-26T16:00:00.000+08:00", "2026-11-27T00:00:00.000+08:00"),
            .init("2026-11-27/A", "2026-11-27T00:00:00.000+08:00", "2026-11-27T08:00:00.000+08:00"),
        ])
        #expect(shifts[1].length == .seconds(4 * 3600))
        #expect(shifts[6].length == .seconds(4 * 3600))
    }

    @Test("an id an earlier era used is never reused, even by a later shift than the first")
    func laterClash() throws {
        // A/B/C 8h changed at 08:00 to A 12:00 / B 20:00: the new B of the 22nd is cut to start at 08:00, and the new
        // A of the 23rd would be 2026-11-23/A, which the old era already had from 00:00 to 08:00.
        var timeline = ShiftTimeline(eights)
        timeline.change(to: try daily("Asia/Shanghai", [("A", "12:00"), ("B", "20:00")]), at: utc("2026-11-23T08:00:00+08:00"))
        #expect(walk(timeline, from: "2026-11-23T01:00:00+08:00", count: 5).map(ExpectedShift.init) == [
            .init("2026-11-23/A", "2026-11-23T00:00:00.000+08:00", "2026-11-23T08:00:00.000+08:00"),
            .init("2026-11-23/B-080000", "2026-11-23T08:00:00.000+08:00", "2026-11-23T12:00:00.000+08:00"),
            .init("2026-11-23/A-120000", "2026-11-23T12:00:00.000+08:00", "2026-11-23T20:00:00.000+08:00"),
            .init("2026-11-23/B", "2026-11-23T20:00:00.000+08:00", "2026-11-24T12:00:00.000+08:00"),
            .init("2026-11-24/A", "2026-11-24T12:00:00.000+08:00", "2026-11-24T20:00:00.000+08:00"),
        ])
    }

    @Test("two changes hours apart in different zones: an id taken twice takes the suffix twice")
    func takenTwice() throws {
        // 2026-11-23/A ran in Shanghai from 00:00; the Shanghai A from 08:00 became A-080000; then Berlin's A from
        // 08:00 (07:00 UTC) finds both taken.
        var timeline = ShiftTimeline(eights)
        timeline.change(to: a08b20, at: utc("2026-11-23T00:00:00Z"))
        timeline.change(to: try daily("Europe/Berlin", [("A", "08:00"), ("B", "20:00")]), at: utc("2026-11-23T07:00:00Z"))
        #expect(walk(timeline, from: "2026-11-22T17:00:00Z", count: 5).map(ExpectedShift.init) == [
            .init("2026-11-23/A", "2026-11-23T00:00:00.000+08:00", "2026-11-23T08:00:00.000+08:00"),
            .init("2026-11-23/A-080000", "2026-11-23T08:00:00.000+08:00", "2026-11-23T15:00:00.000+08:00"),
            .init("2026-11-23/A-080000-080000", "2026-11-23T08:00:00.000+01:00", "2026-11-23T20:00:00.000+01:00"),
            .init("2026-11-23/B", "2026-11-23T20:00:00.000+01:00", "2026-11-24T08:00:00.000+01:00"),
            .init("2026-11-24/A", "2026-11-24T08:00:00.000+01:00", "2026-11-24T20:00:00.000+01:00"),
        ])
    }

    @Test("daily → cycle and cycle → daily")
    func dailyAndCycle() throws {
        let cycle = try ShiftCalendar(cycle: .seconds(7200), anchor: utc("2026-11-23T00:00:00Z"),
                                      crews: .init(anchor: nil, days: [["x", "y", "z"]]))
        var timeline = ShiftTimeline(eights)
        timeline.change(to: cycle, at: utc("2026-11-23T01:00:00Z"))  // 09:00 in Shanghai, inside B
        let shifts = walk(timeline, from: "2026-11-23T00:30:00Z", count: 3)
        #expect(shifts.map(ExpectedShift.init) == [
            .init("2026-11-23/B", "2026-11-23T08:00:00.000+08:00", "2026-11-23T09:00:00.000+08:00"),
            .init("2026-11-23/A-000000-010000", "2026-11-23T01:00:00.000Z", "2026-11-23T02:00:00.000Z"),
            .init("2026-11-23/B-020000", "2026-11-23T02:00:00.000Z", "2026-11-23T04:00:00.000Z"),
        ])
        #expect(shifts.map(\.crew) == [nil, "x", "y"])

        var back = ShiftTimeline(cycle)
        back.change(to: eights, at: utc("2026-11-23T09:00:00Z"))  // 17:00 in Shanghai, inside C; cycle B-080000 cut
        #expect(walk(back, from: "2026-11-23T08:30:00Z", count: 3).map(ExpectedShift.init) == [
            .init("2026-11-23/B-080000", "2026-11-23T08:00:00.000Z", "2026-11-23T09:00:00.000Z"),
            .init("2026-11-23/C-170000", "2026-11-23T17:00:00.000+08:00", "2026-11-24T00:00:00.000+08:00"),
            .init("2026-11-24/A", "2026-11-24T00:00:00.000+08:00", "2026-11-24T08:00:00.000+08:00"),
        ])
    }

    @Test("a second change at or before the first one's instant supersedes it; changing to the calendar in force adds nothing")
    func superseded() {
        let b = utc("2026-11-23T08:00:00+08:00"), later = utc("2026-11-24T08:00:00+08:00")
        var timeline = ShiftTimeline(eights)
        timeline.change(to: twelves, at: b)
        timeline.change(to: from0630, at: b)
        #expect(timeline.changes == [b])
        #expect(timeline.calendar(at: b) == from0630)
        #expect(timeline.shift(containing: b).id.description == "2026-11-23/A-080000")

        timeline.change(to: twelves, at: later)
        #expect(timeline.changes == [b, later])
        timeline.change(to: a08b20, at: b)  // before the pending change at `later`: replaces both
        #expect(timeline.changes == [b])
        #expect(timeline.latest == a08b20)

        timeline.change(to: a08b20, at: later)  // already in force
        #expect(timeline.changes == [b])
        timeline.change(to: eights, at: b)  // back to the first calendar before the change took effect
        #expect(timeline == ShiftTimeline(eights))
        timeline.change(to: eights, at: later)
        #expect(timeline == ShiftTimeline(eights))
    }

    @Test("forget(before:) keeps what the shifts from then on depend on, and they do not change")
    func forget() {
        let b1 = utc("2026-11-23T08:00:00+08:00"), b2 = utc("2026-12-01T08:00:00+08:00")
        var timeline = ShiftTimeline(eights)
        timeline.change(to: a08b20, at: b1)
        timeline.change(to: eights, at: b2)
        let original = timeline

        // Before the first change, and soon after it (the first era ended within `idWindow` before the start of
        // the shift containing t, 2026-11-26/B from 20:00 on the 26th): nothing goes.
        for t in ["2026-11-20T00:00:00Z", "2026-11-23T09:00:00+08:00", "2026-11-27T07:00:00+08:00"] {
            var forgot = timeline
            forgot.forget(before: utc(t))
            #expect(forgot == original, "\(t)")
        }
        // 2026-11-27/B started at 20:00 on the 27th, more than 4 days after the first change.
        timeline.forget(before: utc("2026-11-28T07:00:00+08:00"))
        #expect(timeline.changes == [b2])
        #expect(timeline.calendar(at: utc("2000-01-01T00:00:00Z")) == a08b20)
        let range = utc("2026-11-28T07:00:00+08:00")..<utc("2026-12-10T00:00:00Z")
        #expect(timeline.shifts(overlapping: range) == original.shifts(overlapping: range))
        #expect(timeline.shift(containing: utc("2026-11-28T07:00:00+08:00")).id.description == "2026-11-27/B")
        #expect(timeline.shift(containing: b2).id.description == "2026-12-01/B")

        // Long after the last change the timeline is the calendar again.
        timeline.forget(before: utc("2026-12-05T07:59:59+08:00"))
        #expect(timeline.changes == [b2])  // 2026-12-05/A started at 00:00, less than 4 days after the change
        timeline.forget(before: utc("2026-12-05T08:00:00+08:00"))  // 2026-12-05/B started 4 days after it
        #expect(timeline == ShiftTimeline(eights))
        #expect(timeline.changes == [])
    }

    @Test("a timeline with two changes encodes as an array of eras and decodes to an equal one")
    func codable() throws {
        var timeline = ShiftTimeline(eights)
        timeline.change(to: a08b20, at: utc("2026-11-23T08:00:00+08:00"))
        timeline.change(to: try ShiftCalendar(cycle: .seconds(60), anchor: utc("2026-11-24T00:00:00Z"), names: ["A"]),
                        at: utc("2026-11-24T00:00:30Z"))
        let back = try roundTrip(timeline)
        #expect(back == timeline)
        let range = utc("2026-11-22T00:00:00Z")..<utc("2026-11-24T00:05:00Z")
        #expect(back.shifts(overlapping: range) == timeline.shifts(overlapping: range))
        #expect(back.shifts(overlapping: utc("2026-11-24T00:00:00Z")..<utc("2026-11-24T00:02:00Z")).map(\.id.description)
                    == ["2026-11-24/A", "2026-11-24/A-000000-000030", "2026-11-24/A-000100"])

        var small = ShiftTimeline(eights)
        small.change(to: twelves, at: utc("2026-11-23T08:00:00+08:00"))
        #expect(try json(small) == """
            [{"calendar":{"daily":{"shifts":[{"name":"A","start":"00:00"},{"name":"B","start":"08:00"},\
            {"name":"C","start":"16:00"}],"time_zone":"Asia/Shanghai"}},"from":null},\
            {"calendar":{"daily":{"shifts":[{"name":"D","start":"08:00"},{"name":"N","start":"20:00"}],\
            "time_zone":"Asia/Shanghai"}},"from":{"nanosecondsSinceEpoch":1795392000000000000}}]
            """)
    }

    @Test("what change() could not have made does not decode", arguments: [
        ("[]", "at least one era"),
        (#"[{"from":{"nanosecondsSinceEpoch":0},"calendar":CAL}]"#, "first era has no start"),
        (#"[{"from":null,"calendar":CAL},{"from":null,"calendar":CAL}]"#, "era 2 must start"),
        (#"[{"calendar":CAL},{"from":{"nanosecondsSinceEpoch":5},"calendar":CAL},{"from":{"nanosecondsSinceEpoch":5},"calendar":CAL}]"#,
         "era 3 must start"),
    ])
    func corrupt(text: String, message: String) throws {
        let cal = #"{"daily":{"time_zone":"UTC","shifts":[{"name":"A","start":"00:00"}]}}"#
        let error = try #require(throws: DecodingError.self) {
            try JSONDecoder().decode(ShiftTimeline.self, from: Data(text.replacingOccurrences(of: "CAL", with: cal).utf8))
        }
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(error)")
            return
        }
        #expect(context.debugDescription.contains(message), "\(context.debugDescription)")
    }
}

/// Random timelines: up to six changes within half a day or six days around the 2026 spring daylight-saving change in Europe,
/// among daily patterns in three zones (several with the same names) and cycles named like them, at shift
/// boundaries, at the new calendar's boundaries, at arbitrary seconds, and at the instant of an earlier change.
@Suite("Shift timeline: property")
struct ShiftTimelinePropertyTests {
    static let base = utc("2026-03-26T00:00:00Z")
    static let calendars: [ShiftCalendar] = {
        let cycleCrews = ShiftCalendar.CrewRotation(anchor: nil, days: [["x", "y", "z"], ["z", "x", "y"]])
        return [
            try! daily("Asia/Shanghai", Patterns.eights, crews: fourCrews),
            try! daily("Asia/Shanghai", [("A", "08:00"), ("B", "20:00")]),
            try! daily("Asia/Shanghai", [("A", "12:00"), ("B", "20:00")]),
            try! daily("Asia/Shanghai", Patterns.from0630),
            try! daily("Asia/Shanghai", Patterns.twelves),
            try! daily("Europe/Berlin", Patterns.eights),
            try! daily("Europe/Berlin", Patterns.from0230),
            try! daily("America/New_York", [("A", "06:00"), ("B", "18:00")]),
            try! daily("UTC", Patterns.eights),
            try! ShiftCalendar(cycle: .seconds(7200), anchor: base, crews: cycleCrews),
            try! ShiftCalendar(cycle: .seconds(5400), anchor: utc("2026-03-26T00:17:00Z"), names: ["A", "B"]),
            try! ShiftCalendar(cycle: .seconds(1500), anchor: base, names: ["X", "Y"]),
            try! ShiftCalendar(cycle: .seconds(5 * 3600), anchor: utc("2026-03-26T03:00:00Z"), names: ["A"]),
        ]
    }()

    static func instant(_ ns: Int64) -> UTCInstant { UTCInstant(nanosecondsSinceEpoch: ns) }

    /// A random timeline and the calendars in the order they were chosen.
    static func randomTimeline(_ random: inout SplitMix64) -> ShiftTimeline {
        let day: Int64 = 86_400 * 1_000_000_000
        func pick<T>(_ a: [T]) -> T { a[Int(random.next() % UInt64(a.count))] }
        var timeline = ShiftTimeline(pick(calendars))
        // Changes a few hours apart, as well as days, so that eras interact.
        let span = random.next() % 2 == 0 ? day / 2 : 6 * day
        // In time order, as a plant would make them (a change before a pending one replaces it, which case 3 tries).
        let times = (0..<(1 + random.next() % 6)).map { _ in base.nanosecondsSinceEpoch + Int64(random.next() % UInt64(span)) }
        for ns in times.sorted() {
            let calendar = pick(calendars)
            let t = instant(ns)
            let at: UTCInstant
            switch random.next() % 7 {
            case 0, 1: at = timeline.shift(containing: t).start  // a boundary of the timeline so far
            case 2: at = calendar.shift(containing: t).start  // a boundary of the new calendar
            case 3: at = timeline.changes.isEmpty ? t : pick(timeline.changes)  // supersede an earlier change
            case 4: at = instant(t.nanosecondsSinceEpoch / 3_600_000_000_000 * 3_600_000_000_000)  // on the hour
            default: at = instant(t.nanosecondsSinceEpoch / 1_000_000_000 * 1_000_000_000)  // any second
            }
            timeline.change(to: calendar, at: at)
        }
        return timeline
    }

    @Test("shifts tile time, ids are unique, each change cuts where it says and far from changes the calendar rules",
          arguments: 0..<150)
    func randomChanges(seed: UInt64) throws {
        var random = SplitMix64(seed: 0x5EED_0000 + seed)
        let timeline = Self.randomTimeline(&random)
        let changes = timeline.changes
        let window = ShiftTimeline.idWindow.components.seconds * 1_000_000_000
        let lo = utc("2026-03-22T00:00:00Z"), hi = utc("2026-04-08T00:00:00Z")
        let chain = timeline.shifts(overlapping: lo..<hi)
        #expect(chain.first!.contains(lo) && chain.last!.end >= hi)

        var ids: [ShiftID: Shift] = [:]
        var previous: Shift?
        for s in chain {
            #expect(s.start < s.end, "\(s)")
            if let previous { #expect(previous.end == s.start, "\(previous.id) → \(s.id)") }
            previous = s
            #expect(ids.updateValue(s, forKey: s.id) == nil, "duplicate id \(s.id)")
            #expect(timeline.shift(containing: s.start) == s)
            #expect(timeline.shift(containing: Self.instant(s.end.nanosecondsSinceEpoch - 1)) == s)

            // The calendar's shift, cut to the era.
            let calendar = timeline.calendar(at: s.start)
            let own = calendar.shift(containing: s.start)
            let eraStart = changes.last { $0 <= s.start }, eraEnd = changes.first { $0 > s.start }
            #expect(s.start == max(own.start, eraStart ?? own.start))
            #expect(s.end == min(own.end, eraEnd ?? own.end))
            #expect(s.crew == own.crew)
            #expect(s.localStart == (s.start == own.start ? own.localStart : calendar.localTimestamp(s.start)))
            #expect(s.localEnd == (s.end == own.end ? own.localEnd : calendar.localTimestamp(s.end)))
            let (date, time) = calendar.localDateAndTime(s.start)
            let suffix = "-" + time.description.replacingOccurrences(of: ":", with: "") + (time.secondsSinceMidnight % 60 == 0 ? "00" : "")
            if s.start != own.start {
                // Cut: the change's local date and the name with the change's local time.
                #expect(s.start == eraStart)
                #expect(s.id.localDate == date.description)
                #expect(s.id.name.hasPrefix(own.id.name + suffix), "\(s.id) \(own.id)")
            } else {
                #expect(s.id.localDate == own.id.localDate)
                #expect(s.id.name.hasPrefix(own.id.name), "\(s.id) \(own.id)")
            }
            // The base id, then each suffix only because an earlier shift had the id without it.
            var candidate = s.start == own.start ? own.id : ShiftID(localDate: date.description, name: own.id.name + suffix)
            while candidate != s.id {
                let earlier = ids[candidate]
                #expect(earlier.map { $0.start < s.start } == true, "\(s.id): no earlier \(candidate)")
                guard candidate.name.count < s.id.name.count else { break }
                candidate.name += suffix
            }
            // Far from any change (none within the id window before it, none inside it): the calendar's shift.
            if !changes.contains(where: { $0.nanosecondsSinceEpoch > s.start.nanosecondsSinceEpoch - window && $0 < own.end }) {
                #expect(s == own)
            }
        }
        for c in changes where lo < c && c < hi { #expect(chain.contains { $0.start == c }, "change \(c) is a boundary") }

        // Random instants fall in the chain's shift.
        for _ in 0..<200 {
            let t = Self.instant(lo.nanosecondsSinceEpoch + Int64(random.next() % UInt64(hi.nanosecondsSinceEpoch - lo.nanosecondsSinceEpoch)))
            let s = timeline.shift(containing: t)
            #expect(s.contains(t))
            #expect(ids[s.id] == s)
            #expect(timeline.calendar(at: t) == timeline.calendar(at: s.start))
        }

        // The checkpoint form gives the same timeline.
        let back = try roundTrip(timeline)
        #expect(back == timeline)
        #expect(back.shifts(overlapping: lo..<hi) == chain)

        // Forgetting keeps the shifts from then on.
        for _ in 0..<3 {
            let t = Self.instant(lo.nanosecondsSinceEpoch + Int64(random.next() % UInt64(hi.nanosecondsSinceEpoch - lo.nanosecondsSinceEpoch)))
            var forgot = timeline
            forgot.forget(before: t)
            #expect(Set(forgot.changes).isSubset(of: changes))
            #expect(forgot.latest == timeline.latest)
            #expect(forgot.shifts(overlapping: t..<hi) == timeline.shifts(overlapping: t..<hi), "forget(before: \(t))")
            #expect(try roundTrip(forgot) == forgot)
        }
    }
}
