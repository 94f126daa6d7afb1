import KilnTallyCore

/// Why a frame cannot be written in a protocol.
public struct ScaleEncodingError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The inverse of `ScaleStreamParser`: a frame's fields as the bytes an indicator sends. Used by the simulator and
/// by tests; `parse(encode(f))` gives back `f`'s weight, unit and status (the weight equal in value: a Toledo
/// weight with dummy zeros comes back as the integer it means).
public enum ScaleFrameEncoder {
    /// Appends the frame's bytes to `out`. The weight keeps its decimals (a display's fixed decimal point: 0.00 t
    /// is sent as 0.00), unless it has more than the protocol can send, when trailing zeros are dropped.
    ///
    /// - Toledo: the decimal code is chosen from the weight (decimals 1–5 → codes 3–7; an integer too long for six
    ///   digits uses one or two dummy zeros when it ends in them); the increment bits say ×1; SWB b4 is set for
    ///   metric units; out of range is SWB b2, for `overRange` or `underRange`; the tare (0 when nil) is written at
    ///   the weight's decimal code. A nil weight (with out of range) is sent as six dashes.
    /// - Yaohua: the unit is not sent; decimals 0–4.
    /// - A12: `ww` for gross or displayed, `wn` net, `wt` tare; six digits (with the point among them when there are
    ///   decimals, as in `ww000.000kg`), a `-` before them when negative; the unit; CR LF.
    public static func encode(_ frame: ScaleFrame, as scaleProtocol: ScaleProtocol, checksum: Bool = false,
                              into out: inout [UInt8]) throws(ScaleEncodingError) {
        switch scaleProtocol {
        case .toledoContinuous: try toledo(frame, checksum: checksum, into: &out)
        case .yaohuaTF0: try yaohua(frame, into: &out)
        case .xk3190A12: try a12(frame, into: &out)
        }
    }

    /// The frame's bytes.
    public static func encode(_ frame: ScaleFrame, as scaleProtocol: ScaleProtocol,
                              checksum: Bool = false) throws(ScaleEncodingError) -> [UInt8] {
        var out: [UInt8] = []
        try encode(frame, as: scaleProtocol, checksum: checksum, into: &out)
        return out
    }

    /// The Toledo checksum of `bytes`: the two's complement of the low 7 bits of their sum.
    public static func toledoChecksum<C: Collection<UInt8>>(_ bytes: C) -> UInt8 {
        var sum: UInt32 = 0
        for b in bytes { sum &+= UInt32(b) }
        return UInt8(truncatingIfNeeded: 0 &- sum) & 0x7F
    }

    /// The Yaohua XOR of bytes 1–8 as two upper-case hex characters.
    public static func yaohuaXOR<C: Collection<UInt8>>(_ bytes: C) -> (UInt8, UInt8) {
        var x: UInt8 = 0
        for b in bytes { x ^= b }
        return (hexDigit(x >> 4), hexDigit(x & 0x0F))
    }

    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }

    /// Six digits of `value`, zero-padded; nil when it needs more.
    private static func sixDigits(_ value: UInt64) -> [UInt8]? {
        guard value <= 999_999 else { return nil }
        var v = value
        var digits = [UInt8](repeating: 0x30, count: 6)
        for i in stride(from: 5, through: 0, by: -1) {
            digits[i] = 0x30 + UInt8(v % 10)
            v /= 10
        }
        return digits
    }

    private static func toledo(_ f: ScaleFrame, checksum: Bool, into out: inout [UInt8]) throws(ScaleEncodingError) {
        let unit = f.unit ?? .kilogram
        let unitBits: UInt8
        switch unit {
        case .kilogram, .pound: unitBits = 0
        case .gram: unitBits = 1
        case .tonne: unitBits = 2
        case .ounce: unitBits = 3
        case .shortTon: unitBits = 7
        case .unrecognized: throw ScaleEncodingError("Toledo: an unrecognized unit cannot be sent")
        }
        let metric = unit == .kilogram || unit == .gram || unit == .tonne
        // The decimal code and the digits of the weight at it.
        var code: UInt8 = 2
        var weightDigits: [UInt8]
        if let given = f.weight {
            let w = given.decimals > 5 ? given.normalized : given
            if w.decimals > 5 { throw ScaleEncodingError("Toledo: \(w) has more than 5 decimals") }
            let magnitude = w.mantissa.magnitude
            if w.decimals > 0 {
                code = UInt8(w.decimals) + 2
                guard let d = sixDigits(magnitude) else { throw ScaleEncodingError("Toledo: \(w) needs more than six digits") }
                weightDigits = d
            } else if let d = sixDigits(magnitude) {
                weightDigits = d
            } else if magnitude % 10 == 0, let d = sixDigits(magnitude / 10) {
                code = 1
                weightDigits = d
            } else if magnitude % 100 == 0, let d = sixDigits(magnitude / 100) {
                code = 0
                weightDigits = d
            } else {
                throw ScaleEncodingError("Toledo: \(w) needs more than six digits")
            }
        } else {
            guard f.overRange == true || f.underRange == true else {
                throw ScaleEncodingError("Toledo: a frame without a weight must be out of range")
            }
            weightDigits = Array("------".utf8)
        }
        // The tare at the same code.
        let tare = f.tare ?? .zero
        let tareDigits: [UInt8]?
        switch code {
        case 0: tareDigits = tare.with(decimals: 0).flatMap { $0.mantissa % 100 == 0 ? sixDigits($0.mantissa.magnitude / 100) : nil }
        case 1: tareDigits = tare.with(decimals: 0).flatMap { $0.mantissa % 10 == 0 ? sixDigits($0.mantissa.magnitude / 10) : nil }
        default: tareDigits = tare.with(decimals: Int(code) - 2).flatMap { sixDigits($0.mantissa.magnitude) }
        }
        guard let tareDigits, tare.mantissa >= 0 else {
            throw ScaleEncodingError("Toledo: tare \(tare) does not fit six digits at the weight's decimal position")
        }
        let negative = (f.weight?.mantissa ?? 0) < 0 || (f.weight == nil && f.underRange == true)
        let outOfRange = f.overRange == true || f.underRange == true
        let swa: UInt8 = 0x20 | 0x08 | code
        var swb: UInt8 = 0x20
        if f.kind == .net { swb |= 0x01 }
        if negative { swb |= 0x02 }
        if outOfRange { swb |= 0x04 }
        if f.motion == true { swb |= 0x08 }
        if metric { swb |= 0x10 }
        let swc: UInt8 = 0x20 | unitBits
        let start = out.count
        out.append(0x02)
        out.append(swa)
        out.append(swb)
        out.append(swc)
        out.append(contentsOf: weightDigits)
        out.append(contentsOf: tareDigits)
        out.append(0x0D)
        if checksum { out.append(toledoChecksum(out[start...])) }
    }

    private static func yaohua(_ f: ScaleFrame, into out: inout [UInt8]) throws(ScaleEncodingError) {
        guard let given = f.weight else { throw ScaleEncodingError("Yaohua TF0: a frame needs a weight") }
        let w = given.decimals > 4 ? given.normalized : given
        guard w.decimals <= 4 else { throw ScaleEncodingError("Yaohua TF0: \(w) has more than 4 decimals") }
        guard let digits = sixDigits(w.mantissa.magnitude) else { throw ScaleEncodingError("Yaohua TF0: \(w) needs more than six digits") }
        let start = out.count
        out.append(0x02)
        out.append(w.mantissa < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
        out.append(contentsOf: digits)
        out.append(0x30 + UInt8(w.decimals))
        let (hi, lo) = yaohuaXOR(out[(start + 1)...])
        out.append(hi)
        out.append(lo)
        out.append(0x03)
    }

    private static func a12(_ f: ScaleFrame, into out: inout [UInt8]) throws(ScaleEncodingError) {
        guard let given = f.weight else { throw ScaleEncodingError("A12: a frame needs a weight") }
        let w = given.decimals > 6 ? given.normalized : given
        let unit: String
        switch f.unit ?? .kilogram {
        case .kilogram: unit = "kg"
        case .tonne: unit = "t"
        case .gram: unit = "g"
        case .pound: unit = "lb"
        default: throw ScaleEncodingError("A12: unit \(f.unit!) cannot be sent")
        }
        var digits = String(w.mantissa.magnitude)
        let width = max(6, w.decimals + 1)
        if digits.count < width { digits = String(repeating: "0", count: width - digits.count) + digits }
        if w.decimals > 0 { digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -w.decimals)) }
        let number = (w.mantissa < 0 ? "-" : "") + digits
        guard number.utf8.count <= Int(ScaleStreamParser.a12MaxNumber) else {
            throw ScaleEncodingError("A12: \(w) needs more than \(ScaleStreamParser.a12MaxNumber) characters")
        }
        let prefix: String = switch f.kind {
        case .net: "wn"
        case .tare: "wt"
        case .gross, .displayed: "ww"
        }
        out.append(contentsOf: (prefix + number + unit + "\r\n").utf8)
    }
}
