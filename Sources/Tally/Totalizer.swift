import KilnTallyCore

/// Turns a totalizer's good readings into exact mass deltas (DOMAIN.md §2.5):
///
/// - Δ = current − previous good value. Readings that are not good (timeouts, sentinels, faults) are skipped: the
///   next good reading's Δ covers the gap, so nothing fed during an outage is lost.
/// - A decrease is a **rollover** when the previous value was in the top 10 % of the modulus (Δ + modulus), otherwise
///   a **reset**: the counter started again from zero, so Δ = current, with an event (an alarm when the counter is
///   not supposed to be resettable).
/// - A Δ larger than `max_rate` × elapsed time × 1.2 (plus one tonne-hour's worth of slack for display resolution,
///   see `allowance`) is **rejected**: not counted, flagged T. If the next reading continues from the rejected value
///   (a real jump: someone set the counter), that becomes the new baseline — the jump itself is never counted; if it
///   continues from the old value (a glitch), the spike is dropped.
///
/// Values are converted to exact milligrams once (`Mass(value, unit)`), which is exact for counters with up to 15
/// significant digits (a BW500's 4,294,967.295 t has 10).
public struct TotalizerTracker: Sendable, Hashable, Codable {
    public struct Parameters: Sendable, Hashable, Codable {
        public var modulus: Mass?
        public var resettable: Bool
        public var maxRateTonnesPerHour: Double

        public init(modulus: Mass?, resettable: Bool, maxRateTonnesPerHour: Double) {
            self.modulus = modulus
            self.resettable = resettable
            self.maxRateTonnesPerHour = maxRateTonnesPerHour
        }
    }

    /// What one good reading contributed.
    public enum Step: Sendable, Hashable {
        /// The first good reading: a baseline, nothing to count yet.
        case baseline(value: Mass, at: UTCInstant)
        /// `delta` fed between `from` and `to` (the previous good reading's time and this one's).
        case delta(Mass, from: UTCInstant, to: UTCInstant, previous: Mass, current: Mass, kind: Kind)
        /// Not counted: a step too large for `max_rate` (flag T); `previous` stays the baseline for now.
        case rejected(Mass, from: UTCInstant, to: UTCInstant, previous: Mass, current: Mass)
        /// A jump confirmed by the reading after it: the baseline moved to the rejected value without counting the
        /// jump, and `delta` (from the rejected value to `current`) is counted.
        case rebaselined(jump: Mass, delta: Mass, from: UTCInstant, to: UTCInstant, previous: Mass, current: Mass)

        public enum Kind: String, Sendable, Hashable, Codable {
            case normal, rollover, reset
        }
    }

    public let parameters: Parameters
    /// The last good value the deltas continue from, and its time.
    public private(set) var last: (value: Mass, time: UTCInstant)? {
        get { lastValue.map { ($0, lastTime!) } }
        set {
            lastValue = newValue?.value
            lastTime = newValue?.time
        }
    }
    private var lastValue: Mass?
    private var lastTime: UTCInstant?
    /// A rejected value waiting for the next reading to tell a glitch from a real jump.
    private var suspect: Mass?
    private var suspectTime: UTCInstant?

    public init(_ parameters: Parameters) { self.parameters = parameters }

    /// The largest Δ accepted over `seconds`: max_rate × time × 1.2, plus the counter's resolution (a display
    /// that moves in whole counts can show one extra count at any moment).
    public func allowance(seconds: Double, resolution: Mass = Mass(kilograms: 1)) -> Mass {
        let tonnes = parameters.maxRateTonnesPerHour * max(seconds, 0) / 3600 * 1.2
        return Mass(milligrams: Int64((tonnes * 1e9).rounded(.up))) + resolution
    }

    /// Takes one reading of the counter (in kg or t); nil when it does not count (not good, no value, wrong unit,
    /// or not later than the previous good reading — a wall-clock step back never makes a negative interval).
    public mutating func consume(_ reading: Reading) -> Step? {
        guard reading.quality == .good, let unit = reading.unit, let number = reading.value.doubleValue,
              let value = Mass(number, unit) else { return nil }
        let t = reading.time
        guard let (previous, t0) = last else {
            last = (value, t)
            return .baseline(value: value, at: t)
        }
        guard t > t0 else { return nil }
        let seconds = Double(t.nanosecondsSinceEpoch - t0.nanosecondsSinceEpoch) / 1e9
        if let s = suspect, let st = suspectTime {
            suspect = nil
            suspectTime = nil
            // A real jump continues from the rejected value; a glitch falls back to the old line.
            let sinceSuspect = Double(t.nanosecondsSinceEpoch - st.nanosecondsSinceEpoch) / 1e9
            let fromOld = delta(from: previous, to: value)
            if let (d, _) = delta(from: s, to: value), d <= allowance(seconds: sinceSuspect),
               fromOld == nil || fromOld!.0 > allowance(seconds: seconds) {
                last = (value, t)
                return .rebaselined(jump: s - previous, delta: d, from: st, to: t, previous: previous, current: value)
            }
        }
        guard let (d, kind) = delta(from: previous, to: value) else { return nil }
        if d > allowance(seconds: seconds) {
            suspect = value
            suspectTime = t
            return .rejected(d, from: t0, to: t, previous: previous, current: value)
        }
        last = (value, t)
        return .delta(d, from: t0, to: t, previous: previous, current: value, kind: kind)
    }

    /// Δ from `a` to `b` with the rollover/reset rule.
    func delta(from a: Mass, to b: Mass) -> (Mass, Step.Kind)? {
        if b >= a { return (b - a, .normal) }
        if let m = parameters.modulus, a.milligrams >= m.milligrams / 10 * 9 {
            return (b - a + m, .rollover)
        }
        return (b, .reset)
    }

    // Codable: the stored properties (the computed `last` is derived from them).
    enum CodingKeys: String, CodingKey {
        case parameters, lastValue, lastTime, suspect, suspectTime
    }
}
