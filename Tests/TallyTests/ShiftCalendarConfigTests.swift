import KilnTallyCore
import Tally
import Testing

/// Decodes `[shifts]` from text the way the daemon does: the loader validates, `decode` reports semantic errors.
func decodeShifts(_ text: String) throws(ConfigErrors) -> ShiftCalendar {
    var schema = ConfigSchema()
    schema.register(ShiftCalendar.configSection)
    let document = try ConfigLoader(schema: schema).load(text: text, file: "k.toml")
    let diagnostics = ConfigDiagnostics(document: document)
    let calendar = ShiftCalendar.decode(ConfigReader(document: document, diagnostics: diagnostics))
    try diagnostics.finish()
    guard let calendar else {
        throw ConfigErrors([ConfigDiagnostic(file: "k.toml", message: "decode returned nil without a diagnostic")])
    }
    return calendar
}

/// The diagnostics `text` gets, one description each.
func shiftErrors(_ text: String) -> [String] {
    do {
        _ = try decodeShifts(text)
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

@Suite("Shift calendar: the [shifts] section")
struct ShiftCalendarConfigTests {
    @Test("without [shifts] the calendar is three 8-hour shifts from 00:00 in Asia/Shanghai")
    func absentSection() throws {
        #expect(try decodeShifts("") == ShiftCalendar.standard)
        #expect(try decodeShifts("") == daily("Asia/Shanghai", Patterns.eights))
    }

    @Test("a daily pattern with a crew rotation")
    func dailyWithCrews() throws {
        let cal = try decodeShifts("""
            [shifts]
            time_zone = "Europe/Berlin"
            shift = [
              { name = "A", start = "06:30" },
              { name = "B", start = "14:30:15" },
              { name = "C", start = "22:30" },
            ]

            [shifts.crews]
            anchor_date = "2026-11-20"
            rotation = [
              ["甲", "乙", "丙"], ["甲", "乙", "丙"],
              ["丁", "甲", "乙"], ["丁", "甲", "乙"],
            ]
            """)
        #expect(cal.pattern == .daily(timeZone: "Europe/Berlin", shifts: [
            .init(name: "A", start: TimeOfDay("06:30")!), .init(name: "B", start: TimeOfDay("14:30:15")!),
            .init(name: "C", start: TimeOfDay("22:30")!),
        ]))
        // 02:00 UTC on the 24th is 03:00 CET: the night shift of the 23rd, rotation day 4 → C is 乙.
        let night = cal.shift(containing: utc("2026-11-24T02:00:00Z"))
        #expect(night.id.description == "2026-11-23/C")
        #expect(night.crew == "乙")
        #expect(night.localStart == "2026-11-23T22:30:00.000+01:00")
        #expect(cal.shift(after: night).crew == "甲")  // 2026-11-24/A: day 5 = day 1 again
    }

    @Test("the time zone defaults to Asia/Shanghai")
    func defaultZone() throws {
        let cal = try decodeShifts("""
            [shifts]
            shift = [{ name = "D", start = "08:00" }, { name = "N", start = "20:00" }]
            """)
        #expect(cal == (try daily("Asia/Shanghai", Patterns.twelves)))
    }

    @Test("a fixed cycle")
    func cycle() throws {
        let cal = try decodeShifts("""
            [shifts]
            cycle = "2m"
            anchor = "2026-11-23T16:00:00+08:00"
            names = ["A", "B"]

            [shifts.crews]
            rotation = [["x", "y"], ["z", "x"]]
            """)
        #expect(cal.pattern == .cycle(length: .seconds(120), anchor: utc("2026-11-23T08:00:00Z"), names: ["A", "B"]))
        let s = cal.shift(containing: utc("2026-11-23T08:05:00Z"))
        #expect(s.id.description == "2026-11-23/A-080400")
        #expect(s.crew == "z")
        #expect(try decodeShifts("[shifts]\ncycle = \"1m\"\nanchor = \"2026-11-23T08:00:00Z\"").pattern
                == .cycle(length: .seconds(60), anchor: utc("2026-11-23T08:00:00Z"), names: ["A", "B", "C"]))
    }

    @Test("an unknown time zone, with a suggestion")
    func unknownZone() {
        #expect(shiftErrors("""
            [shifts]
            time_zone = "Europe/Berln"
            [[shifts.shift]]
            name = "A"
            start = "00:00"
            """) == [
            #"k.toml:2: shifts.time_zone: unknown time zone "Europe/Berln": not in /usr/share/zoneinfo (expected an IANA name such as Asia/Shanghai or Europe/Berlin; is the tzdata package installed?) (did you mean "Europe/Berlin"?)"#,
        ])
        #expect(shiftErrors("[shifts]\ntime_zone = \"Nowhere/Special\"\nshift = [{ name = \"A\", start = \"00:00\" }]") == [
            #"k.toml:2: shifts.time_zone: unknown time zone "Nowhere/Special": not in /usr/share/zoneinfo (expected an IANA name such as Asia/Shanghai or Europe/Berlin; is the tzdata package installed?)"#,
        ])
    }

    @Test("duplicate names, starts out of order, bad times: every one reported at its key and line")
    func shiftErrorsInOnePass() {
        #expect(shiftErrors("""
            [shifts]
            [[shifts.shift]]
            name = "A"
            start = "08:00"
            [[shifts.shift]]
            name = "A"
            start = "06:00"
            [[shifts.shift]]
            name = "B"
            start = "25:00"
            [[shifts.shift]]
            name = "C 2"
            start = "8:00"
            """) == [
            #"k.toml:6: shifts.shift[1].name: shift name "A" is used more than once"#,
            #"k.toml:7: shifts.shift[1].start: start 06:00 is not after the previous shift's start 08:00: list the shifts in the order of the day, the first one earliest (the last one ends at the first one's start the next day)"#,
            #"k.toml:10: shifts.shift[2].start: expected a time of day "HH:MM" or "HH:MM:SS" (00:00 to 23:59:59) but found "25:00""#,
            #"k.toml:12: shifts.shift[3].name: shift name "C 2" must be non-empty and use only A-Z a-z 0-9 _ - (it appears in ids and topics)"#,
            #"k.toml:13: shifts.shift[3].start: expected a time of day "HH:MM" or "HH:MM:SS" (00:00 to 23:59:59) but found "8:00""#,
        ])
    }

    @Test("a rotation day with the wrong number of crews, an empty crew, a missing anchor date")
    func rotationErrors() {
        #expect(shiftErrors("""
            [shifts]
            shift = [{ name = "A", start = "00:00" }, { name = "B", start = "12:00" }]
            [shifts.crews]
            rotation = [
              ["甲", "乙"],
              ["丙"],
              ["丁", ""],
            ]
            """) == [
            "k.toml:3: shifts.crews.anchor_date: required with a daily pattern: a crew rotation over a daily pattern needs the local date its first day falls on",
            "k.toml:6: shifts.crews.rotation[1]: rotation day 2 lists 1 crew but the pattern has 2 shifts a day (one crew per shift, in the pattern's order)",
            "k.toml:7: shifts.crews.rotation[2][1]: rotation day 3, shift 2: the crew name is empty",
        ])
        #expect(shiftErrors("""
            [shifts]
            shift = [{ name = "A", start = "00:00" }]
            [shifts.crews]
            anchor_date = "2026-11-31"
            rotation = []
            """) == [#"k.toml:4: shifts.crews.anchor_date: expected a date "YYYY-MM-DD" but found "2026-11-31""#])
        #expect(shiftErrors("""
            [shifts]
            shift = [{ name = "A", start = "00:00" }]
            [shifts.crews]
            anchor_date = "2026-11-30"
            rotation = []
            """) == ["k.toml:5: shifts.crews.rotation: a crew rotation needs at least one day"])
    }

    @Test("a pattern and a cycle together, or neither")
    func patternOrCycle() {
        #expect(shiftErrors("""
            [shifts]
            cycle = "2m"
            anchor = "2026-11-23T08:00:00Z"
            [[shifts.shift]]
            name = "A"
            start = "00:00"
            """) == ["k.toml:2: shifts.cycle: give either [[shifts.shift]] tables (a daily pattern) or `cycle` (a fixed cycle), not both"])
        #expect(shiftErrors("""
            # the plant's calendar
            [shifts]
            time_zone = "Europe/Berlin"
            """) == ["k.toml:2: shifts: give either [[shifts.shift]] tables (a daily pattern) or `cycle` (a fixed cycle); without a [shifts] section the calendar is three 8-hour shifts A 00:00, B 08:00, C 16:00 in Asia/Shanghai"])
        #expect(shiftErrors("[shifts]\nshift = []") == ["k.toml:2: shifts.shift: a pattern needs at least one shift"])
    }

    @Test("a cycle's keys: time zone, whole seconds, names, anchor, crews")
    func cycleErrors() {
        #expect(shiftErrors("""
            [shifts]
            time_zone = "UTC"
            cycle = "1.5s"
            names = ["A", "A", "b c"]
            anchor = "2026-11-23 08:00"
            [shifts.crews]
            anchor_date = "2026-11-20"
            rotation = [["x", "y", "z"]]
            """) == [
            "k.toml:2: shifts.time_zone: is for a daily pattern; a `cycle` runs in UTC (its ids use the UTC date)",
            "k.toml:3: shifts.cycle: a cycle of 1.5 seconds is not a whole number of seconds",
            #"k.toml:4: shifts.names[1]: shift name "A" is used more than once"#,
            #"k.toml:4: shifts.names[2]: shift name "b c" must be non-empty and use only A-Z a-z 0-9 _ - (it appears in ids and topics)"#,
            #"k.toml:5: shifts.anchor: expected an RFC 3339 instant with an offset such as "2026-11-23T08:00:00Z" but found "2026-11-23 08:00""#,
            "k.toml:7: shifts.crews.anchor_date: a crew rotation over a cycle starts at the cycle's anchor; it takes no anchor date",
        ])
        #expect(shiftErrors("[shifts]\ncycle = \"2m\"\nnames = []") == [
            #"k.toml:1: shifts.anchor: a `cycle` needs its anchor: an instant a shift starts at, e.g. "2026-11-23T08:00:00Z""#,
            "k.toml:3: shifts.names: a pattern needs at least one shift",
        ])
        #expect(shiftErrors("[shifts]\ncycle = \"2m\"\nanchor = \"2026-11-23T08:00:00.5Z\"\n[shifts.crews]\nrotation = [[\"x\"]]") == [
            "k.toml:3: shifts.anchor: the anchor 2026-11-23T08:00:00.500Z is not on a whole second",
            "k.toml:5: shifts.crews.rotation[0]: rotation day 1 lists 1 crew but the pattern has 3 shifts a day (one crew per shift, in the pattern's order)",
        ])
        // The loader's own check: a cycle under a second.
        #expect(shiftErrors("[shifts]\ncycle = \"500ms\"\nanchor = \"2026-11-23T08:00:00Z\"") == [
            #"k.toml:2: shifts.cycle: expected a duration of at least 1s but found "500ms""#,
        ])
    }

    @Test("cycle keys in a daily pattern are errors")
    func cycleKeysInADailyPattern() {
        #expect(shiftErrors("""
            [shifts]
            anchor = "2026-11-23T08:00:00Z"
            names = ["A"]
            shift = [{ name = "A", start = "00:00" }]
            """) == [
            "k.toml:2: shifts.anchor: is for a `cycle`; a daily pattern names and times each [[shifts.shift]]",
            "k.toml:3: shifts.names: is for a `cycle`; a daily pattern names and times each [[shifts.shift]]",
        ])
    }

    @Test("every key is in the reference with its documentation")
    func reference() {
        var schema = ConfigSchema()
        schema.register(ShiftCalendar.configSection)
        let reference = schema.markdownReference()
        for path in ["`shifts.time_zone`", "`shifts.shift[]`", "`shifts.shift[].name`", "`shifts.shift[].start`",
                     "`shifts.cycle`", "`shifts.anchor`", "`shifts.names`", "`shifts.crews`", "`shifts.crews.anchor_date`",
                     "`shifts.crews.rotation`"] {
            #expect(reference.contains("| \(path) |"), "\(path)")
        }
        #expect(reference.contains(#"default `"Asia/Shanghai"`"#))
    }
}
