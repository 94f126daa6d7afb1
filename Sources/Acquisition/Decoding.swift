import KilnTallyCore

/// Which Modbus table a channel reads.
public enum RegisterTable: String, Sendable, CaseIterable {
    case coil, discrete, holding, input
    public var isBitTable: Bool { self == .coil || self == .discrete }
}

/// How a channel's registers are decoded.
public enum ValueType: String, Sendable, CaseIterable {
    case bool, int16, uint16, int32, uint32, int64, uint64, float32, float64
    /// One bit of a 16-bit register (bit 0-15) or of the 32-bit value of two registers (bit 16-31).
    case bit
    /// Text in N registers, two characters each (high byte first for ABCD/CDAB, swapped for BADC/DCBA).
    case string

    /// Registers (or bits, for bool) a value of this type occupies; for `bit` and `string` see
    /// `ChannelConfig.registerCount`.
    public var registerCount: Int {
        switch self {
        case .bool, .int16, .uint16, .bit, .string: 1
        case .int32, .uint32, .float32: 2
        case .int64, .uint64, .float64: 4
        }
    }
}

/// Byte and word order of multi-register values, named by where the bytes of the big-endian value `ABCD`
/// (32-bit) end up on the wire. The same four names apply to 64-bit values:
/// `ABCD` high word first, bytes big-endian (Modbus' "natural" order) · `CDAB` low word first (word swap) ·
/// `BADC` high word first, bytes swapped in each word · `DCBA` low word first and bytes swapped (fully little-endian).
public enum WordOrder: String, Sendable, CaseIterable {
    case abcd = "ABCD", cdab = "CDAB", badc = "BADC", dcba = "DCBA"

    var wordsReversed: Bool { self == .cdab || self == .dcba }
    var bytesSwapped: Bool { self == .badc || self == .dcba }
}

/// Pure decoding of register words into values. Small functions by width, as in Telegraf's type conversions.
public enum RegisterDecoder {
    /// The registers as one big-endian unsigned integer of 16 × n bits, after undoing the word order.
    public static func combine(_ regs: ArraySlice<UInt16>, order: WordOrder) -> UInt64 {
        // Walks the slice in place (no copy): this runs for every multi-register reading.
        var v: UInt64 = 0
        func add(_ w: UInt16) { v = v << 16 | UInt64(order.bytesSwapped ? w.byteSwapped : w) }
        if order.wordsReversed {
            for w in regs.reversed() { add(w) }
        } else {
            for w in regs { add(w) }
        }
        return v
    }

    /// Decodes a channel's value from exactly its `registerCount` words.
    public static func decode(_ regs: ArraySlice<UInt16>, channel ch: ChannelConfig) -> ReadingValue {
        switch ch.type {
        case .bit:
            let bit = ch.bit ?? 0
            return .bool((combine(regs, order: ch.wordOrder) >> UInt64(bit)) & 1 == 1)
        case .string:
            var bytes: [UInt8] = []
            for w in regs {
                let word = ch.wordOrder.bytesSwapped ? w.byteSwapped : w
                bytes.append(UInt8(word >> 8))
                bytes.append(UInt8(word & 0xFF))
            }
            // Devices pad with NULs or spaces; a NUL ends the text.
            if let nul = bytes.firstIndex(of: 0) { bytes.removeSubrange(nul...) }
            while bytes.last == 0x20 { bytes.removeLast() }
            return .string(String(decoding: bytes, as: UTF8.self))
        default:
            return decode(regs, as: ch.type, order: ch.wordOrder)
        }
    }

    /// Decodes `type` from `regs` (exactly `type.registerCount` words).
    public static func decode(_ regs: ArraySlice<UInt16>, as type: ValueType, order: WordOrder) -> ReadingValue {
        precondition(regs.count == type.registerCount, "decode \(type) needs \(type.registerCount) registers, got \(regs.count)")
        switch type {
        case .bit: return .bool(regs.first! & 1 == 1)
        case .string: return .string(String(decoding: [UInt8(regs.first! >> 8), UInt8(regs.first! & 0xFF)].filter { $0 != 0 }, as: UTF8.self))
        case .bool: return .bool(regs.first! != 0)
        case .int16: return .int(Int64(Int16(bitPattern: order.bytesSwapped ? regs.first!.byteSwapped : regs.first!)))
        case .uint16: return .uint(UInt64(order.bytesSwapped ? regs.first!.byteSwapped : regs.first!))
        case .int32: return .int(Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: combine(regs, order: order)))))
        case .uint32: return .uint(combine(regs, order: order))
        case .int64: return .int(Int64(bitPattern: combine(regs, order: order)))
        case .uint64: return .uint(combine(regs, order: order))
        case .float32: return .double(Double(Float(bitPattern: UInt32(truncatingIfNeeded: combine(regs, order: order)))))
        case .float64: return .double(Double(bitPattern: combine(regs, order: order)))
        }
    }

    /// Applies `value × scale + offset`. Integers stay exact when scale is 1 and offset 0.
    public static func scaled(_ value: ReadingValue, scale: Double, offset: Double) -> ReadingValue {
        if scale == 1, offset == 0 { return value }
        // Whole-number scale and offset keep integers exact (no detour through binary floating point).
        if let s = Int64(exactly: scale), let o = Int64(exactly: offset) {
            switch value {
            case .int(let v):
                let (m, o1) = v.multipliedReportingOverflow(by: s)
                let (r, o2) = m.addingReportingOverflow(o)
                if !o1 && !o2 { return .int(r) }
            case .uint(let v):
                if let sv = Int64(exactly: v) {
                    let (m, o1) = sv.multipliedReportingOverflow(by: s)
                    let (r, o2) = m.addingReportingOverflow(o)
                    if !o1 && !o2 { return r >= 0 ? .uint(UInt64(r)) : .int(r) }
                }
            default: break
            }
        }
        switch value {
        case .bool, .string, .none: return value
        case .int, .uint, .double: return .double(value.doubleValue! * scale + offset)
        }
    }
}

extension RegisterDecoder {
    /// Whether a decoded (unscaled) value is one of the channel's "no value" sentinels.
    public static func isSentinel(_ value: ReadingValue, _ sentinels: Set<Int64>) -> Bool {
        guard !sentinels.isEmpty else { return false }
        switch value {
        case .int(let v): return sentinels.contains(v)
        case .uint(let v): return v <= UInt64(Int64.max) && sentinels.contains(Int64(v))
        case .double(let d): return d == d.rounded() && abs(d) < 9.2e18 && sentinels.contains(Int64(d))
        default: return false
        }
    }
}

extension RegisterDecoder {
    /// The reading of channel `ch` from the words of the request that read it (starting at `requestAddress`), as a
    /// poll delivers it: bits as bools; a sentinel or a NaN/infinite float as quality invalid with no value ("no value" from the device is
    /// never a number in any sum); anything else decoded, scaled, quality good — each with its raw registers.
    public static func reading(
        device: DeviceID, channel ch: ChannelConfig, words: [UInt16], requestAddress: Int, time: UTCInstant,
        clockSynchronized synced: Bool
    ) -> Reading {
        let from = ch.address - requestAddress
        let slice = words[from..<from + ch.registerCount]
        if ch.table.isBitTable {
            return Reading(device: device, channel: ch.id, time: time, value: .bool(slice.first! != 0), unit: ch.unit,
                           quality: .good, clockSynchronized: synced, raw: Array(slice))
        }
        let decoded = decode(slice, channel: ch)
        // A sentinel, or a float that is not a number (NaN, ±infinity: a device's way of saying "no value", or a
        // word-order mistake): never a number in any sum.
        var notANumber = false
        if case .double(let d) = decoded { notANumber = !d.isFinite }
        if notANumber || isSentinel(decoded, ch.sentinels) {
            return Reading(device: device, channel: ch.id, time: time, value: .none, unit: ch.unit, quality: .invalid,
                           clockSynchronized: synced, raw: Array(slice))
        }
        return Reading(device: device, channel: ch.id, time: time, value: scaled(decoded, scale: ch.scale, offset: ch.offset),
                       unit: ch.unit, quality: .good, clockSynchronized: synced, raw: Array(slice))
    }
}
