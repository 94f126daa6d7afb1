import KilnTallyCore
import Tally
import Testing

/// Daylight-saving changes. The 2026 changes, by the EU and US rules: Europe/Berlin goes forward at 01:00 UTC on
/// 2026-03-29 (02:00 CET → 03:00 CEST) and back at 01:00 UTC on 2026-10-25 (03:00 CEST → 02:00 CET);
/// America/New_York goes forward at 07:00 UTC on 2026-03-08 (02:00 EST → 03:00 EDT) and back at 06:00 UTC on
/// 2026-11-01 (02:00 EDT → 01:00 EST); America/Santiago goes forward at midnight, 04:00 UTC on 2026-09-06
/// (00:00 -04 → 01:00 -03), and back at 03:00 UTC on 2026-04-05 (24:00 -03 on the 4th → 23:00 -04).
@Suite("Shift calendar: daylight saving")
struct ShiftCalendarDSTTests {
    /// Worked example 4: a constant 12 t/h over the shift, in whole tonnes.
    static func tonnesAt12PerHour(_ s: Shift) -> Int64 { 12 * s.length.components.seconds / 3600 }

    static let cases = [
        // Europe/Berlin, 00:00/08:00/16:00: 2026-03-29/A lasts 7 h, 2026-10-25/A 9 h; the shifts around them 8 h.
        ShiftCase("Europe/Berlin", Patterns.eights, at: "2026-03-29T01:00:00Z", "2026-03-29/A", "2026-03-28T23:00:00Z",
                  "2026-03-29T06:00:00Z", "2026-03-29T00:00:00.000+01:00", "2026-03-29T08:00:00.000+02:00", hours: 7),
        ShiftCase("Europe/Berlin", Patterns.eights, at: "2026-03-28T20:00:00Z", "2026-03-28/C", "2026-03-28T15:00:00Z",
                  "2026-03-28T23:00:00Z", "2026-03-28T16:00:00.000+01:00", "2026-03-29T00:00:00.000+01:00", hours: 8),
        ShiftCase("Europe/Berlin", Patterns.eights, at: "2026-03-29T06:00:00Z", "2026-03-29/B", "2026-03-29T06:00:00Z",
                  "2026-03-29T14:00:00Z", "2026-03-29T08:00:00.000+02:00", "2026-03-29T16:00:00.000+02:00", hours: 8),
        ShiftCase("Europe/Berlin", Patterns.eights, at: "2026-10-25T01:30:00Z", "2026-10-25/A", "2026-10-24T22:00:00Z",
                  "2026-10-25T07:00:00Z", "2026-10-25T00:00:00.000+02:00", "2026-10-25T08:00:00.000+01:00", hours: 9),
        ShiftCase("Europe/Berlin", Patterns.eights, at: "2026-10-25T07:00:00Z", "2026-10-25/B", "2026-10-25T07:00:00Z",
                  "2026-10-25T15:00:00Z", "2026-10-25T08:00:00.000+01:00", "2026-10-25T16:00:00.000+01:00", hours: 8),
        // America/New_York, the same pattern: 2026-03-08/A lasts 7 h, 2026-11-01/A 9 h.
        ShiftCase("America/New_York", Patterns.eights, at: "2026-03-08T07:00:00Z", "2026-03-08/A", "2026-03-08T05:00:00Z",
                  "2026-03-08T12:00:00Z", "2026-03-08T00:00:00.000-05:00", "2026-03-08T08:00:00.000-04:00", hours: 7),
        ShiftCase("America/New_York", Patterns.eights, at: "2026-03-08T04:00:00Z", "2026-03-07/C", "2026-03-07T21:00:00Z",
                  "2026-03-08T05:00:00Z", "2026-03-07T16:00:00.000-05:00", "2026-03-08T00:00:00.000-05:00", hours: 8),
        ShiftCase("America/New_York", Patterns.eights, at: "2026-11-01T06:30:00Z", "2026-11-01/A", "2026-11-01T04:00:00Z",
                  "2026-11-01T13:00:00Z", "2026-11-01T00:00:00.000-04:00", "2026-11-01T08:00:00.000-05:00", hours: 9),
        ShiftCase("America/New_York", Patterns.eights, at: "2026-11-01T13:00:00Z", "2026-11-01/B", "2026-11-01T13:00:00Z",
                  "2026-11-01T21:00:00Z", "2026-11-01T08:00:00.000-05:00", "2026-11-01T16:00:00.000-05:00", hours: 8),
        // Europe/Berlin from 02:30: 02:30 does not exist on 2026-03-29, so A starts at 03:00 CEST and A and the C
        // before it lose half an hour each; on 2026-10-25 it happens twice and A starts at the first (CEST).
        ShiftCase("Europe/Berlin", Patterns.from0230, at: "2026-03-29T01:00:00Z", "2026-03-29/A", "2026-03-29T01:00:00Z",
                  "2026-03-29T08:30:00Z", "2026-03-29T03:00:00.000+02:00", "2026-03-29T10:30:00.000+02:00", hours: 7.5),
        ShiftCase("Europe/Berlin", Patterns.from0230, at: "2026-03-29T00:59:59Z", "2026-03-28/C", "2026-03-28T17:30:00Z",
                  "2026-03-29T01:00:00Z", "2026-03-28T18:30:00.000+01:00", "2026-03-29T03:00:00.000+02:00", hours: 7.5),
        ShiftCase("Europe/Berlin", Patterns.from0230, at: "2026-10-25T01:30:00Z", "2026-10-25/A", "2026-10-25T00:30:00Z",
                  "2026-10-25T09:30:00Z", "2026-10-25T02:30:00.000+02:00", "2026-10-25T10:30:00.000+01:00", hours: 9),
        ShiftCase("Europe/Berlin", Patterns.from0230, at: "2026-10-25T00:29:59Z", "2026-10-24/C", "2026-10-24T16:30:00Z",
                  "2026-10-25T00:30:00Z", "2026-10-24T18:30:00.000+02:00", "2026-10-25T02:30:00.000+02:00", hours: 8),
        // Two starts in one gap: X (02:00) and Y (02:30) both fall on 03:00 CEST; X does not happen, Y takes 9 h.
        ShiftCase("Europe/Berlin", Patterns.twoInOneGap, at: "2026-03-29T01:00:00Z", "2026-03-29/Y", "2026-03-29T01:00:00Z",
                  "2026-03-29T10:00:00Z", "2026-03-29T03:00:00.000+02:00", "2026-03-29T12:00:00.000+02:00", hours: 9),
        ShiftCase("Europe/Berlin", Patterns.twoInOneGap, at: "2026-03-29T00:00:00Z", "2026-03-28/Z", "2026-03-28T11:00:00Z",
                  "2026-03-29T01:00:00Z", "2026-03-28T12:00:00.000+01:00", "2026-03-29T03:00:00.000+02:00", hours: 14),
        ShiftCase("Europe/Berlin", Patterns.twoInOneGap, at: "2026-03-30T00:00:00Z", "2026-03-30/X", "2026-03-30T00:00:00Z",
                  "2026-03-30T00:30:00Z", "2026-03-30T02:00:00.000+02:00", "2026-03-30T02:30:00.000+02:00", hours: 0.5),
        // America/Santiago changes at midnight: A starts at 01:00 on the day it goes forward; going back, 23:00-24:00
        // on the 4th happens twice and the C of the 4th takes both.
        ShiftCase("America/Santiago", Patterns.eights, at: "2026-09-06T04:00:00Z", "2026-09-06/A", "2026-09-06T04:00:00Z",
                  "2026-09-06T11:00:00Z", "2026-09-06T01:00:00.000-03:00", "2026-09-06T08:00:00.000-03:00", hours: 7),
        ShiftCase("America/Santiago", Patterns.eights, at: "2026-09-06T03:59:59Z", "2026-09-05/C", "2026-09-05T20:00:00Z",
                  "2026-09-06T04:00:00Z", "2026-09-05T16:00:00.000-04:00", "2026-09-06T01:00:00.000-03:00", hours: 8),
        ShiftCase("America/Santiago", Patterns.eights, at: "2026-04-05T03:30:00Z", "2026-04-04/C", "2026-04-04T19:00:00Z",
                  "2026-04-05T04:00:00Z", "2026-04-04T16:00:00.000-03:00", "2026-04-05T00:00:00.000-04:00", hours: 9),
        // A half-hour offset without daylight saving.
        ShiftCase("Asia/Kolkata", Patterns.eights, at: "2026-11-23T00:00:00Z", "2026-11-23/A", "2026-11-22T18:30:00Z",
                  "2026-11-23T02:30:00Z", "2026-11-23T00:00:00.000+05:30", "2026-11-23T08:00:00.000+05:30", hours: 8),
    ]

    @Test("shifts across daylight-saving changes, starts in a gap or a repeated hour", arguments: cases)
    func acrossChanges(_ c: ShiftCase) throws { try c.check() }

    @Test("worked example 4: 12 t/h over 2026-03-29/A is 84 t and over 2026-10-25/A 108 t, in Berlin and New York",
          arguments: ["Europe/Berlin", "America/New_York"])
    func workedExample4(zone: String) throws {
        let cal = try daily(zone, Patterns.eights)
        let (spring, autumn) = zone == "Europe/Berlin" ? ("2026-03-29/A", "2026-10-25/A") : ("2026-03-08/A", "2026-11-01/A")
        #expect(try Self.tonnesAt12PerHour(#require(cal.shift(id: ShiftID(spring)!))) == 84)
        #expect(try Self.tonnesAt12PerHour(#require(cal.shift(id: ShiftID(autumn)!))) == 108)
    }

    @Test("both occurrences of a repeated hour fall in the same shift; a shift that does not happen has no id")
    func repeatedHourAndSkippedShift() throws {
        let cal = try daily("Europe/Berlin", Patterns.eights)
        // 02:30 happens at 00:30 UTC (CEST) and at 01:30 UTC (CET): both are in 2026-10-25/A.
        #expect(cal.shift(containing: utc("2026-10-25T00:30:00Z")) == cal.shift(containing: utc("2026-10-25T01:30:00Z")))
        let gap = try daily("Europe/Berlin", Patterns.twoInOneGap)
        #expect(gap.shift(id: ShiftID("2026-03-29/X")!) == nil)
        let z = try #require(gap.shift(id: ShiftID("2026-03-28/Z")!))
        #expect(gap.shifts(overlapping: z.start..<utc("2026-03-29T02:00:00Z")).map(\.id.description)
                == ["2026-03-28/Z", "2026-03-29/Y"])
    }
}
