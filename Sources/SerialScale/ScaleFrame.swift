import KilnTallyCore

/// The ASCII stream formats of weighbridge indicators that do not speak Modbus (DOMAIN.md §1.3). In stream mode the
/// indicator sends frames continuously, several a second, and the reader never sends a byte.
public enum ScaleProtocol: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// "Toledo continuous": `STX SWA SWB SWC <6-digit weight> <6-digit tare> CR [checksum]`, 17 or 18 bytes. Sent
    /// by Mettler Toledo terminals and emulated by Cardinal, Fairbanks, Ohaus, Rice Lake and many Chinese indicators.
    case toledoContinuous = "toledo_continuous"
    /// Yaohua XK3190-A9/A9+/D9 continuous mode (tF = 0): 12 bytes `STX sign 6-digits decimals XOR-hex(2) ETX`.
    case yaohuaTF0 = "yaohua_tf0"
    /// Yaohua XK3190-A12+SS continuous lines: `ww000.000kg` (gross), `wn…` (net), `wt…` (tare).
    case xk3190A12 = "xk3190_a12"

    public var description: String { rawValue }

    /// Whether the protocol has an optional checksum the reader must be told about (`checksum = true`). Yaohua's
    /// XOR is always there and always checked; the A12 lines have none.
    public var hasOptionalChecksum: Bool { self == .toledoContinuous }

    /// Whether frames carry a motion (stability) bit. Without one the weighbridge needs the tally's software check
    /// (`stable_window` and `stable_tolerance`).
    public var hasMotionBit: Bool { self == .toledoContinuous }

    /// Whether frames say their unit; without one the unit comes from the device's configuration.
    public var sendsUnit: Bool { self != .yaohuaTF0 }
}

/// A unit a frame can state. Only kg and t are units readings carry (`KilnTallyCore.Unit`); the others are converted
/// exactly (by their definitions) when a frame becomes readings.
public enum ScaleUnit: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case kilogram = "kg", tonne = "t", gram = "g", pound = "lb", ounce = "oz"
    /// The US short ton, 2000 lb (Toledo SWC units 111).
    case shortTon = "ton"
    /// A unit code the reader does not know (Toledo SWC units 100, 101, 110): the weight is no weight.
    case unrecognized = "unrecognized"

    public var description: String { rawValue }

    /// One of this unit in kilograms, as an exact decimal (mantissa, decimals); nil for `unrecognized`.
    /// 1 lb = 0.45359237 kg exactly (international pound, 1959); 1 oz = 1/16 lb; 1 short ton = 2000 lb.
    var kilogramFactor: (mantissa: Int64, decimals: Int)? {
        switch self {
        case .kilogram: (1, 0)
        case .tonne: (1000, 0)
        case .gram: (1, 3)
        case .pound: (45_359_237, 8)
        case .ounce: (28_349_523_125, 12)
        case .shortTon: (90_718_474, 5)
        case .unrecognized: nil
        }
    }
}

/// An exact decimal number as an indicator shows it: `mantissa × 10^-decimals` (e.g. 2000 and 2 for "20.00").
/// Equality and hashing are by value ("20.00" == "20"); `mantissa` and `decimals` keep the indicator's own form.
public struct ScaleDecimal: Sendable, Hashable, CustomStringConvertible {
    public var mantissa: Int64
    /// Digits after the decimal point, 0...18.
    public var decimals: Int

    public init(mantissa: Int64, decimals: Int = 0) {
        precondition((0...18).contains(decimals), "decimals must be 0...18")
        self.mantissa = mantissa
        self.decimals = decimals
    }

    /// Parses "-20.50", "+3", "0.005"; nil for anything else.
    public init?(_ text: String) {
        var m: Int64 = 0, d = 0, point = false, digits = 0, negative = false
        for (i, c) in text.utf8.enumerated() {
            switch c {
            case UInt8(ascii: "-") where i == 0: negative = true
            case UInt8(ascii: "+") where i == 0: break
            case UInt8(ascii: ".") where !point: point = true
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let (a, o1) = m.multipliedReportingOverflow(by: 10)
                let (b, o2) = a.addingReportingOverflow(Int64(c - 48))
                guard !o1, !o2 else { return nil }
                m = b
                digits += 1
                if point { d += 1 }
            default: return nil
            }
        }
        guard digits > 0, d <= 18 else { return nil }
        self.init(mantissa: negative ? -m : m, decimals: d)
    }

    public static let zero = ScaleDecimal(mantissa: 0)

    /// The value as a Double: `Double(mantissa) / 10^decimals`, one rounding (the form the reading store keeps
    /// compactly as a decimal).
    public var doubleValue: Double { Double(mantissa) / Self.powersOfTen[decimals] }

    /// The same value with no trailing zeros after the point ("20.00" → "20").
    public var normalized: ScaleDecimal {
        var n = self
        while n.decimals > 0 && n.mantissa % 10 == 0 {
            n.mantissa /= 10
            n.decimals -= 1
        }
        return n
    }

    /// The value with exactly `decimals` digits after the point, if it has no more than that and fits.
    public func with(decimals target: Int) -> ScaleDecimal? {
        guard (0...18).contains(target) else { return nil }
        let n = normalized
        guard target >= n.decimals else { return nil }
        let (m, overflow) = n.mantissa.multipliedReportingOverflow(by: Self.integerPowersOfTen[target - n.decimals])
        return overflow ? nil : ScaleDecimal(mantissa: m, decimals: target)
    }

    /// `self × other`, exactly; nil on overflow or more than 18 decimals.
    func multiplied(by factor: (mantissa: Int64, decimals: Int)) -> ScaleDecimal? {
        let (m, overflow) = mantissa.multipliedReportingOverflow(by: factor.mantissa)
        guard !overflow else { return nil }
        var r = ScaleDecimal(mantissa: m, decimals: 0)
        r.decimals = decimals + factor.decimals
        r = r.normalized
        return r.decimals <= 18 ? r : nil
    }

    public var description: String {
        let negative = mantissa < 0
        var digits = String(mantissa.magnitude)
        if decimals > 0 {
            if digits.count <= decimals { digits = String(repeating: "0", count: decimals - digits.count + 1) + digits }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -decimals))
        }
        return (negative ? "-" : "") + digits
    }

    public static func == (a: ScaleDecimal, b: ScaleDecimal) -> Bool {
        let x = a.normalized, y = b.normalized
        return x.mantissa == y.mantissa && x.decimals == y.decimals
    }

    public func hash(into hasher: inout Hasher) {
        let n = normalized
        hasher.combine(n.mantissa)
        hasher.combine(n.decimals)
    }

    static let powersOfTen: [Double] = (0...18).map { (0..<$0).reduce(1.0) { r, _ in r * 10 } }
    static let integerPowersOfTen: [Int64] = (0...18).map { (0..<$0).reduce(Int64(1)) { r, _ in r * 10 } }
}

/// The three status bytes of a Toledo continuous frame, as received (DOMAIN.md §1.3; Mettler Wildcat, Fairbanks
/// FB3000/PC2250, Rice Lake 920i).
public struct ToledoStatus: Sendable, Hashable {
    public var a: UInt8
    public var b: UInt8
    public var c: UInt8

    public init(a: UInt8, b: UInt8, c: UInt8) {
        self.a = a
        self.b = b
        self.c = c
    }

    /// SWA bits 0–2: where the decimal point is, or how many dummy zeros follow the six digits:
    /// 0 = `XXXXXX00`, 1 = `XXXXXX0`, 2 = `XXXXXX`, 3 = `XXXXX.X`, 4 = `XXXX.XX`, 5 = `XXX.XXX`, 6 = `XX.XXXX`,
    /// 7 = `X.XXXXX`.
    public var decimalCode: UInt8 { a & 0x07 }
    /// SWA bits 3–4: the display increment, 1, 2 or 5 (nil for the unused code 00).
    public var increment: Int? {
        switch (a >> 3) & 0x03 {
        case 1: 1
        case 2: 2
        case 3: 5
        default: nil
        }
    }
    /// SWB b0: the displayed weight is net.
    public var net: Bool { b & 0x01 != 0 }
    /// SWB b1: the displayed weight is negative.
    public var negative: Bool { b & 0x02 != 0 }
    /// SWB b2: out of range (over capacity, or under zero when negative).
    public var outOfRange: Bool { b & 0x04 != 0 }
    /// SWB b3: in motion.
    public var motion: Bool { b & 0x08 != 0 }
    /// SWB b4: kg (1) or lb (0), when SWC's units are 000.
    public var kilograms: Bool { b & 0x10 != 0 }
    /// SWB b6: power-up, not zeroed yet.
    public var powerUpNotZeroed: Bool { b & 0x40 != 0 }
    /// SWC b3: print requested.
    public var printRequest: Bool { c & 0x08 != 0 }
    /// SWC b4: expanded display (×10).
    public var expanded: Bool { c & 0x10 != 0 }

    /// SWC bits 0–2 with SWB b4: 000 = lb or kg (SWB b4), 001 = g, 010 = t, 011 = oz, 111 = short ton.
    public var unit: ScaleUnit {
        switch c & 0x07 {
        case 0: kilograms ? .kilogram : .pound
        case 1: .gram
        case 2: .tonne
        case 3: .ounce
        case 7: .shortTon
        default: .unrecognized
        }
    }
}

/// One decoded frame: what the indicator said, in its own unit.
public struct ScaleFrame: Sendable, Hashable {
    /// What `weight` is.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The weight on the display, gross or net as the display shows it (Yaohua TF0, which does not say which).
        case displayed
        /// The gross weight (Toledo with SWB b0 clear, A12 `ww`).
        case gross
        /// The net weight (Toledo with SWB b0 set: the display shows net; A12 `wn`).
        case net
        /// The tare (A12 `wt`).
        case tare
    }

    public var scaleProtocol: ScaleProtocol
    public var kind: Kind
    /// The weight, signed, in `unit`; nil when the frame carries no digits for it (a Toledo indicator out of range
    /// may send dashes).
    public var weight: ScaleDecimal?
    /// The unit the frame states; nil when the protocol states none (Yaohua TF0: the indicator's configured unit).
    public var unit: ScaleUnit?
    /// In motion; nil when the protocol has no motion bit (Yaohua TF0, A12).
    public var motion: Bool?
    /// Over capacity; nil when the protocol does not say (Yaohua TF0, A12).
    public var overRange: Bool?
    /// Under zero / under range; nil when the protocol does not say.
    public var underRange: Bool?
    /// The tare field (Toledo's second six digits), in `unit`.
    public var tare: ScaleDecimal?
    /// The raw status bytes of a Toledo frame.
    public var toledoStatus: ToledoStatus?
    /// Bytes of the frame on the wire (terminator and checksum included; not an A12 line's CR/LF).
    public var length: Int

    public init(scaleProtocol: ScaleProtocol, kind: Kind, weight: ScaleDecimal?, unit: ScaleUnit?,
                motion: Bool? = nil, overRange: Bool? = nil, underRange: Bool? = nil, tare: ScaleDecimal? = nil,
                toledoStatus: ToledoStatus? = nil, length: Int = 0) {
        self.scaleProtocol = scaleProtocol
        self.kind = kind
        self.weight = weight
        self.unit = unit
        self.motion = motion
        self.overRange = overRange
        self.underRange = underRange
        self.tare = tare
        self.toledoStatus = toledoStatus
        self.length = length
    }
}
