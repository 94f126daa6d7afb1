import KilnTallyCore

/// A time of day on a wall clock, to the second: where a shift of a daily pattern starts (`"06:30"`, `"06:30:15"`).
public struct TimeOfDay: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Seconds since local midnight, 0 ..< 86 400.
    public let secondsSinceMidnight: Int

    /// Nil unless 0 ≤ hours ≤ 23, 0 ≤ minutes ≤ 59 and 0 ≤ seconds ≤ 59.
    public init?(hours: Int, minutes: Int, seconds: Int = 0) {
        guard (0...23).contains(hours), (0...59).contains(minutes), (0...59).contains(seconds) else { return nil }
        secondsSinceMidnight = hours * 3600 + minutes * 60 + seconds
    }

    /// Parses `HH:MM` or `HH:MM:SS` with two digits each (`"06:30"`, `"22:30:15"`); nil for anything else,
    /// including `"24:00"`, `"6:30"` and leap seconds.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        var fields: [Int] = []
        for p in parts {
            guard let v = twoDigits(p) else { return nil }
            fields.append(v)
        }
        self.init(hours: fields[0], minutes: fields[1], seconds: parts.count == 3 ? fields[2] : 0)
    }

    /// `"06:30"`, or `"06:30:15"` when the seconds are not zero.
    public var description: String {
        let h = secondsSinceMidnight / 3600, m = secondsSinceMidnight / 60 % 60, s = secondsSinceMidnight % 60
        return pad2(h) + ":" + pad2(m) + (s == 0 ? "" : ":" + pad2(s))
    }

    /// Earlier in the day.
    public static func < (a: TimeOfDay, b: TimeOfDay) -> Bool { a.secondsSinceMidnight < b.secondsSinceMidnight }
}

/// A calendar date without a time zone (proleptic Gregorian), as the days since 1970-01-01: the local date a shift
/// starts on, or the anchor date of a crew rotation.
public struct LocalDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Days since 1970-01-01 (negative before it).
    public var daysSinceEpoch: Int64

    /// The date `daysSinceEpoch` days after (or before, if negative) 1970-01-01.
    public init(daysSinceEpoch: Int64) { self.daysSinceEpoch = daysSinceEpoch }

    /// Nil unless the month is 1-12 and the day exists in that month (leap years included).
    public init?(year: Int64, month: Int, day: Int) {
        guard (1...12).contains(month), day >= 1, day <= LocalDate.daysIn(month: month, year: year) else { return nil }
        // Howard Hinnant's days-from-civil, the inverse of RFC3339.civilFromDays.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64(month > 2 ? month - 3 : month + 9)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        daysSinceEpoch = era * 146_097 + doe - 719_468
    }

    /// Parses `YYYY-MM-DD` (four-digit year); nil for anything else or a date that does not exist.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].utf8.count == 4, let y = digits(parts[0]),
            let m = twoDigits(parts[1]), let d = twoDigits(parts[2])
        else { return nil }
        self.init(year: Int64(y), month: m, day: d)
    }

    /// `YYYY-MM-DD`.
    public var description: String {
        let (y, m, d) = RFC3339.civilFromDays(daysSinceEpoch)
        var year = String(y)
        while year.count < 4 { year = "0" + year }
        return year + "-" + pad2(m) + "-" + pad2(d)
    }

    /// Earlier in the calendar.
    public static func < (a: LocalDate, b: LocalDate) -> Bool { a.daysSinceEpoch < b.daysSinceEpoch }

    static func daysIn(month: Int, year: Int64) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

extension UTCInstant {
    /// Parses an RFC 3339 date-time with an offset: `2026-11-23T08:00:00Z`, `2026-11-23T16:00:00+08:00`,
    /// `2026-11-23T08:00:00.250Z` (`t`, `z` and a space for `T` are accepted too, as RFC 3339 allows). Fractions
    /// beyond nanoseconds are cut off. Nil for anything else, including a date-time without an offset.
    public init?(rfc3339 text: String) {
        let u = Array(text.utf8)
        guard u.count >= 20, let date = LocalDate(String(decoding: u[0..<10], as: UTF8.self)),
            u[10] == UInt8(ascii: "T") || u[10] == UInt8(ascii: "t") || u[10] == UInt8(ascii: " "),
            let time = TimeOfDay(String(decoding: u[11..<19], as: UTF8.self))
        else { return nil }
        var i = 19
        var nanos: Int64 = 0
        if u[i] == UInt8(ascii: ".") {
            i += 1
            var scale: Int64 = 100_000_000
            let first = i
            while i < u.count, u[i] >= 0x30, u[i] <= 0x39 {
                nanos += Int64(u[i] - 0x30) * scale
                scale /= 10
                i += 1
            }
            guard i > first else { return nil }
        }
        guard i < u.count else { return nil }
        var offset: Int64 = 0
        switch u[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard i + 1 == u.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard i + 6 == u.count, u[i + 3] == UInt8(ascii: ":"),
                let h = twoDigits(u[(i + 1)..<(i + 3)]), let m = twoDigits(u[(i + 4)..<(i + 6)]), h <= 23, m <= 59
            else { return nil }
            offset = Int64(h * 3600 + m * 60) * (u[i] == UInt8(ascii: "-") ? -1 : 1)
        default:
            return nil
        }
        let seconds = date.daysSinceEpoch * 86_400 + Int64(time.secondsSinceMidnight) - offset
        self.init(nanosecondsSinceEpoch: seconds * 1_000_000_000 + nanos)
    }
}

/// Floor division and its remainder (the remainder has the divisor's sign), for instants and dates before an anchor.
func floorDivMod(_ a: Int64, _ b: Int64) -> (quotient: Int64, remainder: Int64) {
    let q = a / b, r = a % b
    return r != 0 && (r < 0) != (b < 0) ? (q - 1, r + b) : (q, r)
}

func pad2(_ v: Int) -> String { v < 10 ? "0" + String(v) : String(v) }

/// Exactly two ASCII digits.
private func twoDigits<S: Sequence<UInt8>>(_ s: S) -> Int? {
    let a = Array(s)
    guard a.count == 2 else { return nil }
    return digits(a)
}

private func twoDigits(_ s: Substring) -> Int? { twoDigits(s.utf8) }

/// One or more ASCII digits (at most 9).
private func digits<S: Sequence<UInt8>>(_ s: S) -> Int? {
    var v = 0, n = 0
    for c in s {
        guard c >= 0x30, c <= 0x39, n < 9 else { return nil }
        v = v * 10 + Int(c - 0x30)
        n += 1
    }
    return n > 0 ? v : nil
}

private func digits(_ s: Substring) -> Int? { digits(s.utf8) }
