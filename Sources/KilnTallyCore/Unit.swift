/// The closed set of engineering units a channel may carry. The tally converts masses and rates to tonnes.
public enum Unit: String, Sendable, Codable, CaseIterable, Hashable {
    case kilogram = "kg"
    case tonne = "t"
    case kilogramPerHour = "kg/h"
    case tonnePerHour = "t/h"
    case metrePerSecond = "m/s"
    case kilogramPerMetre = "kg/m"
    case percent = "%"
    case cubicMetre = "m3"
    case cubicMetrePerHour = "m3/h"
    case second = "s"
    case count = "count"
    case none = "none"

    public enum Dimension: Sendable { case mass, massRate, speed, linearDensity, ratio, volume, volumeRate, time, count, dimensionless }

    public var dimension: Dimension {
        switch self {
        case .kilogram, .tonne: .mass
        case .kilogramPerHour, .tonnePerHour: .massRate
        case .metrePerSecond: .speed
        case .kilogramPerMetre: .linearDensity
        case .percent: .ratio
        case .cubicMetre: .volume
        case .cubicMetrePerHour: .volumeRate
        case .second: .time
        case .count: .count
        case .none: .dimensionless
        }
    }

    /// Factor that converts a value in this unit to tonnes (mass) or tonnes per hour (mass rate); nil otherwise.
    public var toTonnes: Double? {
        switch self {
        case .kilogram, .kilogramPerHour: 0.001
        case .tonne, .tonnePerHour: 1
        default: nil
        }
    }
}
