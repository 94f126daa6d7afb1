#if canImport(FoundationEssentials)
internal import FoundationEssentials
// TimeZone(identifier:) in FoundationEssentials knows only fixed offsets; linking FoundationInternationalization
// gives it the IANA zones (from the ICU data built into the toolchain's lib_FoundationICU, not /usr/share/zoneinfo).
internal import FoundationInternationalization
#else
internal import Foundation
#endif
import KilnTallyCore

/// An IANA time zone and the one rule that turns a wall-clock time into an instant.
///
/// The rule: a wall-clock time `L` happens at **the first instant at which the local clock reads `L` or later**.
/// Most times occur exactly once. A time that occurs twice (the hour repeated when clocks go back) happens at its
/// first occurrence; a time that does not occur (the hour skipped when clocks go forward) happens at the first
/// instant after the gap, i.e. the instant of the change (02:30 on the day Berlin goes from 02:00 to 03:00 is
/// 03:00 CEST = 01:00 UTC).
struct ZoneRules: Sendable, Hashable {
    let zone: TimeZone

    /// Nil for an identifier Foundation does not know.
    init?(identifier: String) {
        guard let zone = TimeZone(identifier: identifier) else { return nil }
        self.zone = zone
    }

    /// The identifiers Foundation knows, for "did you mean" in configuration errors.
    static var knownIdentifiers: [String] { TimeZone.knownTimeZoneIdentifiers }

    /// The zone's offset from UTC at a whole UTC second.
    func offset(atSecond s: Int64) -> Int {
        zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(s)))
    }

    /// The offset in force at `t`.
    func offset(at t: UTCInstant) -> Int {
        offset(atSecond: floorDivMod(t.nanosecondsSinceEpoch, 1_000_000_000).quotient)
    }

    /// The local calendar day (days since 1970-01-01 on the wall clock) that `t` falls on.
    func localDay(of t: UTCInstant) -> Int64 {
        let s = floorDivMod(t.nanosecondsSinceEpoch, 1_000_000_000).quotient
        return floorDivMod(s + Int64(offset(atSecond: s)), 86_400).quotient
    }

    /// The UTC second at which the wall clock first reads `local` (seconds since 1970-01-01 on the wall clock) or
    /// later; see the type's rule. Assumes at most one change of offset within a day either side of `local` (no zone
    /// in use changes its clocks twice within two days).
    func firstInstant(atOrAfterLocal local: Int64) -> Int64 {
        // The offsets in force a day before and a day after: the only offsets the answer can have.
        let before = Int64(offset(atSecond: local - 86_400)), after = Int64(offset(atSecond: local + 86_400))
        let a = local - before, b = local - after
        let aValid = Int64(offset(atSecond: a)) == before, bValid = Int64(offset(atSecond: b)) == after
        switch (aValid, bValid) {
        case (true, true): return min(a, b)  // the same instant, or a repeated time: its first occurrence
        case (true, false): return a
        case (false, true): return b
        case (false, false):
            // In a gap: the clock jumps over `local` between the two candidates. Find the first second at which it
            // reads `local` or later (binary search; a gap is at most a day, so at most 17 steps).
            var lo = min(a, b), hi = max(a, b)  // reads < local at lo, >= local at hi
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2
                if mid + Int64(offset(atSecond: mid)) >= local { hi = mid } else { lo = mid }
            }
            return hi
        }
    }
}
