import KilnTallyCore

/// Looks up the shift of each reading on the hot path: it keeps the shift it found last and answers from it while
/// instants stay inside it, so a lookup is two comparisons; crossing into the next shift costs one calendar lookup
/// per shift, and only a jump elsewhere (a clock step, a replay from another point) a full one.
///
/// A value type: each consumer (e.g. each stream's integrator) keeps its own.
public struct ShiftCursor: Sendable {
    /// The calendar it looks shifts up in.
    public let calendar: ShiftCalendar
    /// The shift the last lookup returned (nil before the first).
    public private(set) var current: Shift?
    /// How many lookups needed the calendar (the first, one per shift crossed, and jumps); for tests and metrics.
    public private(set) var calendarLookups = 0

    /// A cursor with no current shift; the first lookup asks the calendar.
    public init(_ calendar: ShiftCalendar) { self.calendar = calendar }

    /// The shift that `t` falls in; the same answer as `calendar.shift(containing: t)`.
    public mutating func shift(containing t: UTCInstant) -> Shift {
        if let c = current {
            if c.contains(t) { return c }
            if t >= c.end {
                calendarLookups += 1
                let next = calendar.shift(after: c)
                if next.contains(t) {
                    current = next
                    return next
                }
            }
        }
        calendarLookups += 1
        let found = calendar.shift(containing: t)
        current = found
        return found
    }
}
