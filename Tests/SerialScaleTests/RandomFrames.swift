import KilnTallyCore
import SerialScale

extension SplitMix64 {
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
    mutating func chance(_ p: Double) -> Bool { unit() < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

/// Random frames that each protocol can carry, with their status consistent (over range only when not negative,
/// under range only when negative), for the fuzz and round-trip tests.
enum RandomFrames {
    static func frame(_ p: ScaleProtocol, _ r: inout SplitMix64) -> ScaleFrame {
        switch p {
        case .toledoContinuous:
            while true {
                let code = r.int(0...7)
                let digits = Int64(r.int(0...999_999))
                let weight: ScaleDecimal = switch code {
                case 0: ScaleDecimal(mantissa: digits * 100)
                case 1: ScaleDecimal(mantissa: digits * 10)
                default: ScaleDecimal(mantissa: digits, decimals: code - 2)
                }
                var w = weight
                if r.chance(0.3) { w.mantissa.negate() }
                let outOfRange = r.chance(0.1)
                var f = ScaleFrame(
                    scaleProtocol: p, kind: r.chance(0.3) ? .net : .gross, weight: w,
                    unit: r.pick([.kilogram, .kilogram, .tonne, .gram, .pound, .ounce, .shortTon]),
                    motion: r.chance(0.4), overRange: outOfRange && w.mantissa >= 0,
                    underRange: outOfRange && w.mantissa < 0,
                    tare: ScaleDecimal(mantissa: Int64(r.int(0...9999)), decimals: max(0, code - 2)))
                if outOfRange && r.chance(0.3) {
                    f.weight = nil  // dashes
                    f.overRange = true
                    f.underRange = false
                }
                if (try? ScaleFrameEncoder.encode(f, as: p)) != nil { return f }
            }
        case .yaohuaTF0:
            var w = ScaleDecimal(mantissa: Int64(r.int(0...999_999)), decimals: r.int(0...4))
            if r.chance(0.2) { w.mantissa.negate() }
            return ScaleFrame(scaleProtocol: p, kind: .displayed, weight: w, unit: nil)
        case .xk3190A12:
            var w = ScaleDecimal(mantissa: Int64(r.int(0...999_999)), decimals: r.int(0...4))
            if r.chance(0.2) { w.mantissa.negate() }
            return ScaleFrame(scaleProtocol: p, kind: r.pick([.gross, .gross, .net, .tare]), weight: w,
                              unit: r.pick([.kilogram, .tonne, .gram, .pound]))
        }
    }

    /// Whether a decoded frame says what was encoded (weights by value; the tare 0 when none was given).
    static func same(_ decoded: ScaleFrame, _ sent: ScaleFrame) -> Bool {
        guard decoded.scaleProtocol == sent.scaleProtocol, decoded.weight == sent.weight else { return false }
        switch sent.scaleProtocol {
        case .toledoContinuous:
            return decoded.kind == sent.kind && decoded.unit == sent.unit && decoded.motion == sent.motion
                && decoded.overRange == sent.overRange && decoded.underRange == sent.underRange
                && decoded.tare == (sent.tare ?? .zero)
        case .yaohuaTF0:
            return decoded.unit == nil && decoded.motion == nil
        case .xk3190A12:
            return decoded.kind == sent.kind && decoded.unit == sent.unit
        }
    }
}
