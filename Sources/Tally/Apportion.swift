import KilnTallyCore

/// Splitting what was fed between two readings across the shift boundaries that fall between them.
///
/// Between two good readings the feed is taken as even (the totalizer's value interpolates linearly), so a
/// boundary at a fraction f of the interval gets f of the delta — DOMAIN.md §2.5 and the worked example 3:
/// 1,000.000 t at 07:59:58 and 1,000.250 t at 08:00:03 put 0.100 t before 08:00:00 and 0.150 t after, and 1,000.100 t
/// is the end value of one shift and the start value of the next.
public enum Apportion {
    /// The part of `mass` fed before each of `cuts` (sorted instants inside `[from, to]`), cumulative, in exact
    /// integer arithmetic, rounded (halves away from zero) to whole grams — the resolution reports print — so that a
    /// boundary value and the pieces on both sides of it print exactly (end − start = fed to the gram); a mass
    /// that is not a whole number of grams is rounded to the milligram instead.
    public static func cumulative(_ mass: Mass, from t0: UTCInstant, to t1: UTCInstant, at cuts: [UTCInstant]) -> [Mass] {
        let span = t1.nanosecondsSinceEpoch - t0.nanosecondsSinceEpoch
        precondition(span > 0, "apportioning over an empty interval")
        return cuts.map { cut in
            let elapsed = min(max(cut.nanosecondsSinceEpoch - t0.nanosecondsSinceEpoch, 0), span)
            if mass.milligrams % 1_000 == 0 {
                return Mass(grams: scaled(mass.milligrams / 1_000, elapsed, span))
            }
            return Mass(milligrams: scaled(mass.milligrams, elapsed, span))
        }
    }

    /// `mass` split at `cuts`: one piece per sub-interval (cuts.count + 1 pieces), summing exactly to `mass`.
    public static func split(_ mass: Mass, from t0: UTCInstant, to t1: UTCInstant, at cuts: [UTCInstant]) -> [Mass] {
        let marks = cumulative(mass, from: t0, to: t1, at: cuts)
        var pieces: [Mass] = []
        var before = Mass.zero
        for m in marks {
            pieces.append(m - before)
            before = m
        }
        pieces.append(mass - before)
        return pieces
    }

    /// round(value × numerator / denominator) without overflow (full-width product), halves away from zero.
    static func scaled(_ value: Int64, _ numerator: Int64, _ denominator: Int64) -> Int64 {
        precondition(numerator >= 0 && denominator > 0)
        let negative = value < 0
        let product = value.magnitude.multipliedFullWidth(by: numerator.magnitude)
        let (quotient, remainder) = denominator.magnitude.dividingFullWidth(product)
        let rounded = remainder >= denominator.magnitude - remainder ? quotient + 1 : quotient
        return negative ? -Int64(rounded) : Int64(rounded)
    }
}

/// A rate channel integrated over time with the trapezoid rule. Two consecutive good readings at most `maxGap`
/// apart cover the time between them; a longer gap is not bridged (nothing is added for it, and the covered time —
/// the coverage — shows it). Wall-clock steps back are ignored (never a negative interval).
public struct RateIntegrator: Sendable, Hashable, Codable {
    public let maxGap: Duration
    private var lastTime: UTCInstant?
    private var lastRate: Double?

    public init(maxGap: Duration) { self.maxGap = maxGap }

    /// One covered stretch: the rate went linearly from `rate0` to `rate1` (t/h) between `from` and `to`.
    public struct Segment: Sendable, Hashable {
        public var from: UTCInstant
        public var to: UTCInstant
        public var rate0: Double
        public var rate1: Double

        /// Tonnes fed between `a` and `b` (clipped to the segment), with the rate interpolated at the ends.
        public func tonnes(from a: UTCInstant, to b: UTCInstant) -> Double {
            let lo = max(a, from), hi = min(b, to)
            guard lo < hi else { return 0 }
            let r0 = rate(at: lo), r1 = rate(at: hi)
            return (r0 + r1) / 2 * Double(hi.nanosecondsSinceEpoch - lo.nanosecondsSinceEpoch) / 3.6e12
        }

        public func rate(at t: UTCInstant) -> Double {
            let span = Double(to.nanosecondsSinceEpoch - from.nanosecondsSinceEpoch)
            let f = Double(t.nanosecondsSinceEpoch - from.nanosecondsSinceEpoch) / span
            return rate0 + (rate1 - rate0) * f
        }

        /// Time of the segment inside `[a, b)`.
        public func covered(from a: UTCInstant, to b: UTCInstant) -> Duration {
            let lo = max(a, from), hi = min(b, to)
            return lo < hi ? .nanoseconds(hi.nanosecondsSinceEpoch - lo.nanosecondsSinceEpoch) : .zero
        }
    }

    public enum Step: Sendable, Hashable {
        case segment(Segment)
        /// Two good readings further apart than `maxGap`: not bridged.
        case gap(from: UTCInstant, to: UTCInstant)
        case first(UTCInstant)
    }

    /// Takes one reading of the rate (kg/h or t/h); nil when it does not count.
    public mutating func consume(_ reading: Reading) -> Step? {
        guard reading.quality == .good, let v = reading.value.doubleValue, v.isFinite,
              let perHour = reading.unit?.toTonnes, reading.unit?.dimension == .massRate else { return nil }
        let rate = max(0, v * perHour)
        let t = reading.time
        guard let t0 = lastTime, let r0 = lastRate else {
            (lastTime, lastRate) = (t, rate)
            return .first(t)
        }
        guard t > t0 else { return nil }  // a wall-clock step back: keep the later point
        (lastTime, lastRate) = (t, rate)
        if .nanoseconds(t.nanosecondsSinceEpoch - t0.nanosecondsSinceEpoch) > maxGap { return .gap(from: t0, to: t) }
        return .segment(Segment(from: t0, to: t, rate0: r0, rate1: rate))
    }
}
