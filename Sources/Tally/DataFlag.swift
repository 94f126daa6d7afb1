/// The data flag a stream's shift figures (and a ticket) carry: one letter in the spirit of HJ 212-2017's data
/// flags (DOMAIN.md §4), the same letters as the report schema's enum. When several conditions apply, the one
/// highest in this table wins (`DataFlag.worst`); every condition found is also listed in the record's `conditions`.
///
/// | letter | condition | precedence |
/// |---|---|---|
/// | `S` | a person changed the figure (a correction: material set, ticket voided, manual value) | 1 (highest) |
/// | `D` | the device reported a fault: a Modbus exception, a sentinel ("no value"), a NaN | 2 |
/// | `T` | a step was rejected (a totalizer step beyond `max_rate`, a jump), or a weight over/under range | 3 |
/// | `B` | a communication gap: coverage below 100 %, or a shift boundary not bracketed by good readings within the grace period (the boundary value is an estimate) | 4 |
/// | `K` | the clock was not synchronized when some of the readings were taken (kilntally's letter; HJ 212 has none) | 5 |
/// | `F` | the feeder was stopped the whole shift (no feed, rate zero or absent while readings were good) | 6 |
/// | `N` | normal | 7 (lowest) |
///
/// HJ 212's `M` (maintenance) and `C` (calibration) need a person's input the edge does not have; they are not
/// produced.
public enum DataFlag: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case manual = "S"
    case deviceFault = "D"
    case rejected = "T"
    case communicationGap = "B"
    case clockUnsynchronized = "K"
    case stopped = "F"
    case normal = "N"

    /// Position in the table: lower wins.
    public var precedence: Int {
        switch self {
        case .manual: 1
        case .deviceFault: 2
        case .rejected: 3
        case .communicationGap: 4
        case .clockUnsynchronized: 5
        case .stopped: 6
        case .normal: 7
        }
    }

    /// `a < b` when `a` takes precedence over `b`.
    public static func < (a: DataFlag, b: DataFlag) -> Bool { a.precedence < b.precedence }

    /// The flag of a set of conditions: the highest-precedence one, or normal.
    public static func worst<S: Sequence>(_ conditions: S) -> DataFlag where S.Element == DataFlag {
        conditions.min() ?? .normal
    }
}
