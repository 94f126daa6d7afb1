import Acquisition
import KilnTallyCore
import ModbusKit

/// What a simulated device puts in a channel.
public enum SimulatedValue: Sendable, Hashable {
    /// An engineering value; the encoder undoes the channel's scale and offset (rounding to the register's step).
    case value(Double)
    /// The raw register integer itself (exact: a totalizer's counts), before any wrapping to the type's width.
    case counts(UInt64)
    case flag(Bool)
    case text(String)
}

/// The simulator's side of `RegisterDecoder`: values into register words by a channel's type, word order, scale and
/// offset. Written separately from the decoder on purpose (goldens elsewhere come from manuals and pymodbus).
public enum RegisterEncoder {
    /// A big-endian integer of `count` words laid out in `order`.
    static func words(_ v: UInt64, count: Int, order: WordOrder) -> [UInt16] {
        var words = (0..<count).map { i in UInt16(truncatingIfNeeded: v >> UInt64(16 * (count - 1 - i))) }
        if order == .cdab || order == .dcba { words.reverse() }
        if order == .badc || order == .dcba { words = words.map(\.byteSwapped) }
        return words
    }

    /// The words of `value` for channel `ch` (not for bit channels: see `write`).
    public static func encode(_ value: SimulatedValue, for ch: ChannelConfig) -> [UInt16] {
        let n = ch.registerCount
        switch (value, ch.type) {
        case (.text(let s), _):
            var bytes = Array(s.utf8.prefix(2 * n))
            bytes += [UInt8](repeating: 0, count: 2 * n - bytes.count)
            return (0..<n).map { i in
                let w = UInt16(bytes[2 * i]) << 8 | UInt16(bytes[2 * i + 1])
                return ch.wordOrder == .badc || ch.wordOrder == .dcba ? w.byteSwapped : w
            }
        case (.flag(let b), _):
            return words(b ? 1 : 0, count: n, order: ch.wordOrder)
        case (.counts(let c), _):
            return words(c, count: n, order: ch.wordOrder)
        case (.value(let v), .float32):
            return words(UInt64(Float((v - ch.offset) / ch.scale).bitPattern), count: 2, order: ch.wordOrder)
        case (.value(let v), .float64):
            return words(((v - ch.offset) / ch.scale).bitPattern, count: 4, order: ch.wordOrder)
        case (.value(let v), _):
            let raw = ((v - ch.offset) / ch.scale).rounded()
            let bits = raw < 0 ? UInt64(bitPattern: Int64(raw)) : UInt64(min(raw, 1.8e19))
            return words(bits, count: n, order: ch.wordOrder)
        }
    }

    /// Writes `value` into the channel's registers or bit; a `bit` channel changes only its bit of the status word.
    public static func write(_ value: SimulatedValue, for ch: ChannelConfig, into map: inout ModbusRegisterMap) {
        switch ch.table {
        case .coil, .discrete:
            let on: Bool = switch value {
            case .flag(let b): b
            case .value(let v): v != 0
            case .counts(let c): c != 0
            case .text(let s): !s.isEmpty
            }
            if ch.table == .coil { map.coils[ch.address] = on } else { map.discreteInputs[ch.address] = on }
        case .holding, .input:
            let range = ch.address..<(ch.address + ch.registerCount)
            var words: [UInt16]
            if ch.type == .bit, case .flag(let on) = value {
                let current = ch.table == .holding ? map.holdingRegisters[range] : map.inputRegisters[range]
                let word = RegisterDecoder.combine(current[...], order: ch.wordOrder)
                let mask = UInt64(1) << UInt64(ch.bit ?? 0)
                words = Self.words(on ? word | mask : word & ~mask, count: ch.registerCount, order: ch.wordOrder)
            } else {
                words = encode(value, for: ch)
            }
            if ch.table == .holding { map.holdingRegisters[range] = words } else { map.inputRegisters[range] = words }
        }
    }
}
