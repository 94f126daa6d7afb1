import KilnTallyCore

// The JSON writer as it was before it was made fast (commit 042c78a): the oracle the fast one must match byte for
// byte. Kept deliberately simple: a String per number, byte-by-byte quoting, a [Bool] stack of separators.
struct ReferenceJSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma: [Bool] = [false]

    init(reservingCapacity n: Int = 256) { bytes.reserveCapacity(n) }

    var string: String { String(decoding: bytes, as: UTF8.self) }

    private mutating func separator() {
        if needsComma[needsComma.count - 1] { bytes.append(UInt8(ascii: ",")) }
        needsComma[needsComma.count - 1] = true
    }

    mutating func beginObject() { separator(); bytes.append(UInt8(ascii: "{")); needsComma.append(false) }
    mutating func endObject() { needsComma.removeLast(); bytes.append(UInt8(ascii: "}")) }
    mutating func beginArray() { separator(); bytes.append(UInt8(ascii: "[")); needsComma.append(false) }
    mutating func endArray() { needsComma.removeLast(); bytes.append(UInt8(ascii: "]")) }

    /// Writes `"key":` — the value that follows must not write a separator of its own.
    mutating func key(_ k: String) {
        separator()
        appendQuoted(k)
        bytes.append(UInt8(ascii: ":"))
        needsComma[needsComma.count - 1] = false
    }

    mutating func value(_ s: String) { separator(); appendQuoted(s) }
    mutating func value(_ i: Int64) { separator(); bytes.append(contentsOf: String(i).utf8) }
    mutating func value(_ u: UInt64) { separator(); bytes.append(contentsOf: String(u).utf8) }
    mutating func value(_ i: Int) { value(Int64(i)) }
    mutating func value(_ b: Bool) { separator(); bytes.append(contentsOf: (b ? "true" : "false").utf8) }
    mutating func null() { separator(); bytes.append(contentsOf: "null".utf8) }
    /// Finite doubles in their shortest round-trip form; NaN and infinities (not JSON) as null.
    mutating func value(_ d: Double) {
        guard d.isFinite else { null(); return }
        separator()
        if d == d.rounded(), abs(d) < 1e15 {
            bytes.append(contentsOf: String(Int64(d)).utf8)
        } else {
            bytes.append(contentsOf: d.description.utf8)
        }
    }

    mutating func field(_ k: String, _ v: String) { key(k); value(v) }
    mutating func field(_ k: String, _ v: Int64) { key(k); value(v) }
    mutating func field(_ k: String, _ v: UInt64) { key(k); value(v) }
    mutating func field(_ k: String, _ v: Int) { key(k); value(v) }
    mutating func field(_ k: String, _ v: Bool) { key(k); value(v) }
    mutating func field(_ k: String, _ v: Double) { key(k); value(v) }

    private mutating func appendQuoted(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [92, 92])
            case 0x0A: bytes.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: bytes.append(b)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

extension ReferenceJSONWriter {
    /// The fields of a reading as every JSON output shows them (uplink payloads, `store dump --json`):
    /// device, channel, time, value, unit (if any), quality, exception (Modbus exception code, if any),
    /// clock_synchronized, raw.
    mutating func readingFields(_ r: Reading) {
        field("device", r.device.rawValue)
        field("channel", r.channel.rawValue)
        field("time", r.time.rfc3339)
        key("value")
        switch r.value {
        case .int(let v): value(v)
        case .uint(let v): value(v)
        case .double(let v): value(v)
        case .bool(let v): value(v)
        case .string(let s): value(s)
        case .none: null()
        }
        if let unit = r.unit { field("unit", unit.rawValue) }
        field("quality", r.quality.rawValue)
        if r.exceptionCode != 0 { field("exception", Int(r.exceptionCode)) }
        field("clock_synchronized", r.clockSynchronized)
        key("raw")
        beginArray()
        for x in r.raw { value(Int(x)) }
        endArray()
    }
}
