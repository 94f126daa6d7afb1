import KilnTallyCore
import Tally
import Testing

/// The small time types the calendar is configured with. Epoch numbers worked out by hand: 2026-01-01 is day
/// 56 × 365 + 14 leap days = 20 454; 2026-11-23 is 304 + 22 days later = 20 780 (× 86 400 = 1 795 392 000 s).
@Suite("Shift calendar: times and dates")
struct ShiftCalendarTimeTests {
    @Test("times of day parse HH:MM and HH:MM:SS", arguments: [
        ("00:00", 0), ("06:30", 23_400), ("06:30:15", 23_415), ("22:30", 81_000), ("23:59:59", 86_399),
    ])
    func timeOfDay(text: String, seconds: Int) throws {
        let t = try #require(TimeOfDay(text))
        #expect(t.secondsSinceMidnight == seconds)
        #expect(t.description == text)
    }

    @Test("malformed times of day are refused", arguments: [
        "24:00", "6:30", "06:60", "06:30:60", "", "06", "06:30:15:00", "0630", "06:3a", "06:30:", " 06:30", "-1:30",
    ])
    func badTimeOfDay(text: String) {
        #expect(TimeOfDay(text) == nil)
    }

    @Test("local dates count days from 1970-01-01", arguments: [
        ("2026-11-23", Int64(20_780)), ("1970-01-01", 0), ("1969-12-31", -1), ("2024-02-29", 19_782),
        ("2026-01-01", 20_454), ("2000-03-01", 11_017),
    ])
    func localDate(text: String, days: Int64) throws {
        let d = try #require(LocalDate(text))
        #expect(d.daysSinceEpoch == days)
        #expect(LocalDate(daysSinceEpoch: days).description == text)
    }

    @Test("dates that do not exist or are malformed are refused", arguments: [
        "2026-02-29", "2026-13-01", "2026-00-10", "2026-04-31", "26-11-23", "2026-11-23T00:00", "2026/11/23", "",
        "1900-02-29",
    ])
    func badLocalDate(text: String) {
        #expect(LocalDate(text) == nil)
    }

    static let instants: [(String, Int64, Int64)] = [
        ("2026-11-23T00:00:00Z", 1_795_392_000, 0),
        ("2026-11-23T08:00:00+08:00", 1_795_392_000, 0),
        ("2026-11-22T19:00:00-05:00", 1_795_392_000, 0),
        ("2026-11-23t05:30:00+05:30", 1_795_392_000, 0),
        ("2026-03-29T03:00:00+02:00", 1_774_746_000, 0),
        ("2026-11-23T00:00:00.25Z", 1_795_392_000, 250_000_000),
        ("2026-11-23 00:00:00.000000001z", 1_795_392_000, 1),
        ("1969-12-31T23:59:59Z", -1, 0),
    ]

    @Test("RFC 3339 instants with an offset", arguments: instants)
    func rfc3339(text: String, seconds: Int64, nanoseconds: Int64) {
        #expect(UTCInstant(rfc3339: text) == UTCInstant(nanosecondsSinceEpoch: seconds * 1_000_000_000 + nanoseconds))
    }

    @Test("RFC 3339 without an offset or malformed is refused", arguments: [
        "2026-11-23T00:00:00", "2026-11-23T00:00Z", "2026-11-23T00:00:00+0800", "2026-11-23T00:00:00+08",
        "2026-11-23T00:00:00.Z", "2026-11-23X00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T00:00:00Zjunk",
        "2026-11-23T00:00:00+24:00",
    ])
    func badRFC3339(text: String) {
        #expect(UTCInstant(rfc3339: text) == nil)
    }
}
