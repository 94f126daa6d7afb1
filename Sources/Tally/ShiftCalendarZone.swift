import KilnTallyCore

/// An IANA time zone and the one rule that turns a wall-clock time into an instant.
///
/// The rule: a wall-clock time `L` happens at **the first instant at which the local clock reads `L` or later**.
/// Most times occur exactly once. A time that occurs twice (the hour repeated when clocks go back) happens at its
/// first occurrence; a time that does not occur (the hour skipped when clocks go forward) happens at the first
/// instant after the gap, i.e. the instant of the change (02:30 on the day Berlin goes from 02:00 to 03:00 is
/// 03:00 CEST = 01:00 UTC).
///
/// The offsets come from the system's time-zone database (`ZoneDatabase`: `/usr/share/zoneinfo`, Debian's `tzdata`),
/// so a country's new rules arrive with a tzdata update and take effect at the next start of the daemon.
struct ZoneRules: Sendable, Hashable {
    let identifier: String
    private let info: ZoneInfo

    /// Nil for an identifier the time-zone database does not have.
    init?(identifier: String) {
        guard let info = ZoneDatabase.zone(identifier) else { return nil }
        self.identifier = identifier
        self.info = info
    }

    static func == (a: ZoneRules, b: ZoneRules) -> Bool { a.identifier == b.identifier }
    func hash(into h: inout Hasher) { h.combine(identifier) }

    /// The zones the database has, for "did you mean" in configuration errors.
    static var knownIdentifiers: [String] { ZoneDatabase.knownIdentifiers }

    /// The zone's offset from UTC at a whole UTC second.
    func offset(atSecond s: Int64) -> Int { info.offset(atSecond: s) }

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
