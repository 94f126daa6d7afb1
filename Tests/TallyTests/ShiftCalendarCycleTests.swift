import KilnTallyCore
import Tally
import Testing

@Suite("Shift calendar: fixed cycles and the cursor")
struct ShiftCalendarCycleTests {
    let twoMinutes = try! ShiftCalendar(cycle: .seconds(120), anchor: utc("2026-11-23T08:00:00Z"))

    @Test("2-minute cycles from an anchor, named A, B, C in turn, with the UTC start in the id")
    func twoMinuteCycles() {
        let first = twoMinutes.shift(containing: utc("2026-11-23T08:00:00Z"))
        #expect(first.id.description == "2026-11-23/A-080000")
        #expect((first.start, first.end) == (utc("2026-11-23T08:00:00Z"), utc("2026-11-23T08:02:00Z")))
        #expect((first.localStart, first.localEnd) == ("2026-11-23T08:00:00.000Z", "2026-11-23T08:02:00.000Z"))
        #expect(twoMinutes.shift(containing: utc("2026-11-23T08:05:30Z")).id.description == "2026-11-23/C-080400")
        #expect(twoMinutes.shift(containing: utc("2026-11-23T08:06:00Z")).id.description == "2026-11-23/A-080600")
        // Before the anchor the names run backwards: C, B, A, C, …
        #expect(twoMinutes.shift(containing: utc("2026-11-23T07:59:59.999Z")).id.description == "2026-11-23/C-075800")
        #expect(twoMinutes.shift(containing: utc("2026-11-23T07:56:00Z")).id.description == "2026-11-23/B-075600")
        // Across midnight UTC: (23:58 − 08:00) / 2 min = 479 shifts → 479 mod 3 = 2 → C; then A on the next date.
        let last = twoMinutes.shift(containing: utc("2026-11-23T23:59:00Z"))
        #expect(last.id.description == "2026-11-23/C-235800")
        #expect(twoMinutes.shift(after: last).id.description == "2026-11-24/A-000000")
        #expect(twoMinutes.shift(before: last).id.description == "2026-11-23/B-235600")
    }

    @Test func cycleIds() throws {
        let c = try #require(twoMinutes.shift(id: ShiftID("2026-11-23/C-080400")!))
        #expect(c.start == utc("2026-11-23T08:04:00Z"))
        #expect(twoMinutes.shift(id: ShiftID("2026-11-24/A-000000")!)?.start == utc("2026-11-24T00:00:00Z"))
        for bad in ["2026-11-23/A-080400", "2026-11-23/A-080100", "2026-11-23/X-080000", "2026-11-23/A", "2026-11-23/A-0800",
                    "2026-11-23/A-086000"] {
            #expect(twoMinutes.shift(id: ShiftID(bad)!) == nil, "\(bad)")
        }
        #expect(twoMinutes.shifts(overlapping: utc("2026-11-23T08:01:00Z")..<utc("2026-11-23T08:04:00.5Z"))
                    .map(\.id.name) == ["A-080000", "B-080200", "C-080400"])
    }

    @Test("a cycle rotates crews by rounds of the names, from the anchor")
    func cycleCrews() throws {
        let cal = try ShiftCalendar(cycle: .seconds(60), anchor: utc("2026-11-23T08:00:00Z"), names: ["day", "night"],
                                    crews: .init(anchor: nil, days: [["甲", "乙"], ["丙", "丁"], ["乙", "甲"]]))
        var s = cal.shift(containing: utc("2026-11-23T07:58:00Z"))  // two shifts before the anchor: round −1
        var seen: [String] = []
        for _ in 0..<10 {
            seen.append("\(s.id.name):\(s.crew ?? "-")")
            s = cal.shift(after: s)
        }
        #expect(seen == ["day-075800:乙", "night-075900:甲", "day-080000:甲", "night-080100:乙", "day-080200:丙",
                         "night-080300:丁", "day-080400:乙", "night-080500:甲", "day-080600:甲", "night-080700:乙"])
    }

    @Test("cycles of a few hours across a day keep unique ids")
    func longerCycles() throws {
        let cal = try ShiftCalendar(cycle: .seconds(5 * 3600), anchor: utc("2026-11-23T22:00:00+08:00"), names: ["A"])
        let s = cal.shift(containing: utc("2026-11-23T17:00:00Z"))
        #expect(s.id.description == "2026-11-23/A-140000")
        #expect(cal.shift(after: s).id.description == "2026-11-23/A-190000")
        #expect(cal.shift(after: cal.shift(after: s)).id.description == "2026-11-24/A-000000")
    }

    @Test("programmatic construction refuses what cannot work")
    func problems() {
        let anchor = utc("2026-11-23T08:00:00Z")
        #expect(throws: ShiftCalendar.Problem.cycleNotWholeSeconds(.milliseconds(1500))) {
            try ShiftCalendar(cycle: .milliseconds(1500), anchor: anchor)
        }
        #expect(throws: ShiftCalendar.Problem.cycleTooShort(.zero)) { try ShiftCalendar(cycle: .zero, anchor: anchor) }
        #expect(throws: ShiftCalendar.Problem.anchorNotWholeSecond(utc("2026-11-23T08:00:00.5Z"))) {
            try ShiftCalendar(cycle: .seconds(60), anchor: utc("2026-11-23T08:00:00.5Z"))
        }
        #expect(throws: ShiftCalendar.Problem.duplicateName(index: 2, name: "A")) {
            try ShiftCalendar(cycle: .seconds(60), anchor: anchor, names: ["A", "B", "A"])
        }
        #expect(throws: ShiftCalendar.Problem.invalidName(index: 0, name: "早班")) {
            try ShiftCalendar(cycle: .seconds(60), anchor: anchor, names: ["早班"])
        }
        #expect(throws: ShiftCalendar.Problem.rotationAnchorDateInCycle) {
            try ShiftCalendar(cycle: .seconds(60), anchor: anchor, crews: .init(anchor: LocalDate("2026-11-23"), days: [["a", "b", "c"]]))
        }
        #expect(throws: ShiftCalendar.Problem.unknownTimeZone("Mars/Olympus_Mons")) {
            try daily("Mars/Olympus_Mons", [("A", "00:00")])
        }
        #expect(throws: ShiftCalendar.Problem.startNotAfterPrevious(index: 2, start: TimeOfDay("08:00")!, previous: TimeOfDay("16:00")!)) {
            try daily("Asia/Shanghai", [("A", "00:00"), ("C", "16:00"), ("B", "08:00")])
        }
        #expect(throws: ShiftCalendar.Problem.noShifts) { try daily("Asia/Shanghai", []) }
        #expect(throws: ShiftCalendar.Problem.rotationNeedsAnchorDate) {
            try daily("Asia/Shanghai", [("A", "00:00")], crews: .init(anchor: nil, days: [["x"]]))
        }
        #expect(throws: ShiftCalendar.Problem.rotationDayLength(day: 1, crews: 2, shifts: 1)) {
            try daily("Asia/Shanghai", [("A", "00:00")], crews: .init(anchor: LocalDate("2026-11-23"), days: [["x"], ["x", "y"]]))
        }
        #expect(throws: ShiftCalendar.Problem.emptyCrew(day: 0, slot: 1)) {
            try daily("Asia/Shanghai", [("A", "00:00"), ("B", "12:00")], crews: .init(anchor: LocalDate("2026-11-23"), days: [["x", ""]]))
        }
        #expect(throws: ShiftCalendar.Problem.rotationEmpty) {
            try daily("Asia/Shanghai", [("A", "00:00")], crews: .init(anchor: LocalDate("2026-11-23"), days: []))
        }
    }

    @Test("the cursor answers from the shift it found last and asks the calendar once per shift")
    func cursor() throws {
        let cal = try daily("Europe/Berlin", Patterns.eights)
        var cursor = cal.cursor()
        // Every 10 s from 2026-03-28T12:00Z to 2026-03-30T12:00Z: 03-28/B, C, 03-29/A (7 h), B, C, 03-30/A, B.
        var t = utc("2026-03-28T12:00:00Z")
        var ids: [String] = []
        while t < utc("2026-03-30T12:00:00Z") {
            let s = cursor.shift(containing: t)
            #expect(s.contains(t))
            if ids.last != s.id.description { ids.append(s.id.description) }
            t = t.adding(.seconds(10))
        }
        #expect(ids == ["2026-03-28/B", "2026-03-28/C", "2026-03-29/A", "2026-03-29/B", "2026-03-29/C", "2026-03-30/A",
                        "2026-03-30/B"])
        #expect(cursor.calendarLookups == 7)
        // A jump back (a replay from an earlier point) costs one lookup, and so does a jump several shifts ahead.
        #expect(cursor.shift(containing: utc("2026-03-29T03:00:00Z")).id.description == "2026-03-29/A")
        #expect(cursor.calendarLookups == 8)
        #expect(cursor.shift(containing: utc("2026-03-29T04:00:00Z")).id.description == "2026-03-29/A")
        #expect(cursor.calendarLookups == 8)
        #expect(cursor.shift(containing: utc("2026-04-02T12:00:00Z")).id.description == "2026-04-02/B")
        #expect(cursor.current?.id.description == "2026-04-02/B")
        #expect(cursor.calendarLookups == 10)
    }
}
