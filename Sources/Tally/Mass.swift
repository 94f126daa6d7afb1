import KilnTallyCore

/// An exact mass: a whole number of milligrams. Ledgers keep masses for years and sum them across shifts and
/// streams, so a mass is never a binary float: totalizer deltas are exact in their counts, integration results are
/// rounded once to the milligram, and reports print kilograms with three decimals (grams).
public struct Mass: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milligrams: Int64

    public init(milligrams: Int64) { self.milligrams = milligrams }
    public init(kilograms: Int64) { milligrams = kilograms * 1_000_000 }
    public init(grams: Int64) { milligrams = grams * 1_000 }

    public static let zero = Mass(milligrams: 0)

    /// The nearest milligram to `value` in `unit` (kg or t); nil for other units or values that are not finite.
    /// Use only for values that are already floating point on the wire (a float32 totalizer, an integrated rate).
    public init?(_ value: Double, _ unit: Unit) {
        guard value.isFinite, let perUnit = Self.milligramsPerUnit(unit) else { return nil }
        let mg = (value * Double(perUnit)).rounded()
        guard abs(mg) < 9.2e18 else { return nil }
        milligrams = Int64(mg)
    }

    /// Milligrams in one kg or one t.
    public static func milligramsPerUnit(_ unit: Unit) -> Int64? {
        switch unit {
        case .kilogram: 1_000_000
        case .tonne: 1_000_000_000
        default: nil
        }
    }

    public static func + (a: Mass, b: Mass) -> Mass { Mass(milligrams: a.milligrams + b.milligrams) }
    public static func - (a: Mass, b: Mass) -> Mass { Mass(milligrams: a.milligrams - b.milligrams) }
    public static func += (a: inout Mass, b: Mass) { a.milligrams += b.milligrams }
    public static prefix func - (a: Mass) -> Mass { Mass(milligrams: -a.milligrams) }
    public static func < (a: Mass, b: Mass) -> Bool { a.milligrams < b.milligrams }

    /// Kilograms with exactly three decimals (grams), rounded half away from zero from the milligram:
    /// "19220.000", "41.667", "-0.120". The form reports and tickets carry.
    public var kilogramsString: String { Self.fixed(milligrams, scale: 1_000_000, decimals: 3) }

    /// Tonnes with exactly six decimals (grams): "1.500000".
    public var tonnesString: String { Self.fixed(milligrams, scale: 1_000_000_000, decimals: 6) }

    public var description: String { kilogramsString + " kg" }

    /// Encodes as the bare integer number of milligrams (exact, for checkpoints; reports format their own text).
    public init(from decoder: Decoder) throws { milligrams = try decoder.singleValueContainer().decode(Int64.self) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(milligrams)
    }

    /// `value / scale` rounded half away from zero to `decimals` decimals, as text, in integers only.
    static func fixed(_ value: Int64, scale: Int64, decimals: Int) -> String {
        var step: Int64 = 1
        for _ in 0..<decimals { step *= 10 }
        let unit = scale / step  // milligrams per last digit
        let negative = value < 0
        let magnitude = value.magnitude
        let rounded = (magnitude + UInt64(unit) / 2) / UInt64(unit)  // in last-digit units
        let whole = rounded / UInt64(step), fraction = rounded % UInt64(step)
        var digits = String(fraction)
        while digits.count < decimals { digits = "0" + digits }
        return (negative && rounded != 0 ? "-" : "") + "\(whole)." + digits
    }
}
