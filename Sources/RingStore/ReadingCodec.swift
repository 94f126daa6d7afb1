import KilnTallyCore

/// Binary encoding of one reading inside a store record. Little-endian, varint lengths.
///
/// Layout (version 1): seq u64 · time i64 (ns) · quality u8 · flags u8 (bit0 clock synced) · device str · channel str ·
/// unit str (empty = none) · value tag u8 + payload · raw count varint + u16 each.
enum ReadingCodec {
    /// Raw register words kept per reading, at most (the decoder rejects more).
    static let maximumRawWords = 4096
    static func encode(seq: UInt64, _ r: Reading, into out: inout [UInt8]) {
        out.appendLE(seq)
        out.appendLE(UInt64(bitPattern: r.time.nanosecondsSinceEpoch))
        out.append(qualityCode(r.quality))
        out.append(r.clockSynchronized ? 1 : 0)
        out.appendString(r.device.rawValue)
        out.appendString(r.channel.rawValue)
        out.appendString(r.unit?.rawValue ?? "")
        switch r.value {
        case .none: out.append(0)
        case .int(let v): out.append(1); out.appendLE(UInt64(bitPattern: v))
        case .uint(let v): out.append(2); out.appendLE(v)
        case .double(let v): out.append(3); out.appendLE(v.bitPattern)
        case .bool(let v): out.append(4); out.append(v ? 1 : 0)
        case .string(let s): out.append(5); out.appendString(s)
        }
        out.appendVarint(UInt64(r.raw.count))
        for w in r.raw { out.append(UInt8(w & 0xFF)); out.append(UInt8(w >> 8)) }
    }

    static func decode(_ bytes: ArraySlice<UInt8>) -> (seq: UInt64, reading: Reading)? {
        var r = ByteReader(bytes)
        guard let seq = r.u64(), let t = r.u64(), let q = r.u8(), let flags = r.u8(),
              let device = r.string(), let channel = r.string(), let unitName = r.string(), let tag = r.u8()
        else { return nil }
        let value: ReadingValue
        switch tag {
        case 0: value = .none
        case 1: guard let v = r.u64() else { return nil }; value = .int(Int64(bitPattern: v))
        case 2: guard let v = r.u64() else { return nil }; value = .uint(v)
        case 3: guard let v = r.u64() else { return nil }; value = .double(Double(bitPattern: v))
        case 4: guard let v = r.u8() else { return nil }; value = .bool(v != 0)
        case 5: guard let s = r.string() else { return nil }; value = .string(s)
        default: return nil
        }
        guard let n = r.varint(), n <= UInt64(maximumRawWords) else { return nil }
        var raw: [UInt16] = []
        raw.reserveCapacity(Int(n))
        for _ in 0..<n {
            guard let lo = r.u8(), let hi = r.u8() else { return nil }
            raw.append(UInt16(lo) | UInt16(hi) << 8)
        }
        guard let quality = qualityFromCode(q) else { return nil }
        let reading = Reading(
            device: DeviceID(device), channel: ChannelID(channel),
            time: UTCInstant(nanosecondsSinceEpoch: Int64(bitPattern: t)), value: value,
            unit: unitName.isEmpty ? nil : Unit(rawValue: unitName), quality: quality,
            clockSynchronized: flags & 1 != 0, raw: raw)
        return (seq, reading)
    }

    static func qualityCode(_ q: Quality) -> UInt8 {
        switch q {
        case .good: 0
        case .invalid: 1
        case .commFailure: 2
        case .deviceFault: 3
        case .manual: 4
        }
    }

    static func qualityFromCode(_ c: UInt8) -> Quality? {
        switch c {
        case 0: .good
        case 1: .invalid
        case 2: .commFailure
        case 3: .deviceFault
        case 4: .manual
        default: nil
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE(_ v: UInt64) { for i in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func appendLE(_ v: UInt32) { for i in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func appendVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        append(UInt8(v))
    }
    mutating func appendString(_ s: String) {
        appendVarint(UInt64(s.utf8.count))
        append(contentsOf: s.utf8)
    }
}

struct ByteReader {
    var bytes: ArraySlice<UInt8>
    init(_ b: ArraySlice<UInt8>) { bytes = b }
    mutating func u8() -> UInt8? { bytes.popFirst() }
    mutating func u32() -> UInt32? {
        guard bytes.count >= 4 else { return nil }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[bytes.startIndex + i]) << (8 * UInt32(i)) }
        bytes = bytes.dropFirst(4)
        return v
    }
    mutating func u64() -> UInt64? {
        guard bytes.count >= 8 else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[bytes.startIndex + i]) << (8 * UInt64(i)) }
        bytes = bytes.dropFirst(8)
        return v
    }
    mutating func varint() -> UInt64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while let b = bytes.popFirst() {
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }
    mutating func string() -> String? {
        guard let n = varint(), n <= UInt64(bytes.count) else { return nil }
        let s = String(decoding: bytes.prefix(Int(n)), as: UTF8.self)
        bytes = bytes.dropFirst(Int(n))
        return s
    }
}
