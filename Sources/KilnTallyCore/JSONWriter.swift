/// A small, allocation-light JSON writer for payloads whose shape the code controls (readings batches, status).
/// It writes keys in the order given, so output is deterministic.
public struct JSONWriter: Sendable {
    public fileprivate(set) var bytes: [UInt8] = []
    /// Bit `depth` says whether the current object or array already has a member (so the next one needs a comma).
    /// 64 levels; the payloads here nest four deep.
    fileprivate var commas: UInt64 = 0
    fileprivate var depth = 0
    /// The civil date of the last day written: consecutive readings share it.
    fileprivate var lastDay = DayCache()

    public init(reservingCapacity n: Int = 256) { bytes.reserveCapacity(n) }

    public var string: String { String(decoding: bytes, as: UTF8.self) }

    @inline(__always)
    fileprivate mutating func separator() {
        let bit: UInt64 = 1 << UInt64(depth)
        if commas & bit != 0 { bytes.append(UInt8(ascii: ",")) }
        commas |= bit
    }

    @inline(__always)
    private mutating func open(_ c: UInt8) {
        separator()
        bytes.append(c)
        depth += 1
        precondition(depth < 64, "JSONWriter nests at most 63 levels")
        commas &= ~(1 << UInt64(depth))
    }

    public mutating func beginObject() { open(UInt8(ascii: "{")) }
    public mutating func endObject() { depth -= 1; bytes.append(UInt8(ascii: "}")) }
    public mutating func beginArray() { open(UInt8(ascii: "[")) }
    public mutating func endArray() { depth -= 1; bytes.append(UInt8(ascii: "]")) }

    /// Writes `"key":` — the value that follows must not write a separator of its own.
    public mutating func key(_ k: String) {
        separator()
        appendQuoted(k)
        bytes.append(UInt8(ascii: ":"))
        commas &= ~(1 << UInt64(depth))
    }

    public mutating func value(_ s: String) { separator(); appendQuoted(s) }
    public mutating func value(_ i: Int64) { separator(); appendFixed(20) { $0.int(i) } }
    public mutating func value(_ u: UInt64) { separator(); appendFixed(20) { $0.decimal(u) } }
    public mutating func value(_ i: Int) { value(Int64(i)) }
    public mutating func value(_ b: Bool) { separator(); appendASCII(b ? "true" : "false") }
    public mutating func null() { separator(); appendASCII("null") }
    /// Finite doubles in their shortest round-trip form (at most 24 characters); NaN and infinities (not JSON) as null.
    public mutating func value(_ d: Double) { separator(); appendFixed(32) { $0.double(d) } }
    /// An instant as `UTCInstant.rfc3339` writes it (`2026-11-23T08:00:00.250Z`), without building a String.
    public mutating func value(_ t: UTCInstant) {
        separator()
        var day = lastDay
        appendFixed(26) { $0.rfc3339(t, &day) }
        lastDay = day
    }

    public mutating func field(_ k: String, _ v: String) { key(k); value(v) }
    public mutating func field(_ k: String, _ v: Int64) { key(k); value(v) }
    public mutating func field(_ k: String, _ v: UInt64) { key(k); value(v) }
    public mutating func field(_ k: String, _ v: Int) { key(k); value(v) }
    public mutating func field(_ k: String, _ v: Bool) { key(k); value(v) }
    public mutating func field(_ k: String, _ v: Double) { key(k); value(v) }
    public mutating func field(_ k: String, _ v: UTCInstant) { key(k); value(v) }

    private mutating func appendASCII(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// What `write` puts into a stack buffer of `capacity` bytes (enough for it), appended in one piece.
    @inline(__always)
    fileprivate mutating func appendFixed(_ capacity: Int, _ write: (inout FixedBuffer) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
            var out = FixedBuffer(buffer)
            write(&out)
            precondition(!out.overflowed)
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<out.count]))
        }
    }

    /// `"s"` with JSON's escapes. Strings without anything to escape (names, units, qualities: nearly all) are
    /// copied in one piece.
    private mutating func appendQuoted(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        let plain: Bool? = s.utf8.withContiguousStorageIfAvailable { utf8 in
            if !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                bytes.append(contentsOf: utf8)
                return true
            }
            return false
        }
        if plain != true { appendEscaped(s) }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func appendEscaped(_ s: String) {
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
    }
}

extension JSONWriter {
    /// The fields of a reading as every JSON output shows them (uplink payloads, `store dump --json`):
    /// device, channel, time, value, unit (if any), quality, exception (Modbus exception code, if any),
    /// clock_synchronized, raw.
    ///
    /// The hot path of every readings batch: the fields are written into a stack buffer with plain stores and
    /// appended in one piece; a reading that does not fit (long strings, hundreds of raw words) takes the general
    /// path below. Both write the same bytes (JSONWriterTests compares them with the original writer).
    public mutating func readingFields(_ r: Reading) {
        separator()
        var day = lastDay
        defer { lastDay = day }
        let done = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer -> Bool in
            var out = FixedBuffer(buffer)
            out.ascii("\"device\":")
            out.quoted(r.device.rawValue)
            out.ascii(",\"channel\":")
            out.quoted(r.channel.rawValue)
            out.ascii(",\"time\":")
            out.rfc3339(r.time, &day)
            out.ascii(",\"value\":")
            switch r.value {
            case .int(let v): out.int(v)
            case .uint(let v): out.decimal(v)
            case .double(let v): out.double(v)
            case .bool(let v): out.ascii(v ? "true" : "false")
            case .string(let s): out.quoted(s)
            case .none: out.ascii("null")
            }
            if let unit = r.unit {
                out.ascii(",\"unit\":")
                out.quoted(unit.rawValue)
            }
            out.ascii(",\"quality\":")
            out.quoted(r.quality.rawValue)
            if r.exceptionCode != 0 {
                out.ascii(",\"exception\":")
                out.decimal(UInt64(r.exceptionCode))
            }
            out.ascii(r.clockSynchronized ? ",\"clock_synchronized\":true,\"raw\":[" : ",\"clock_synchronized\":false,\"raw\":[")
            for (i, x) in r.raw.enumerated() {
                if i > 0 { out.byte(UInt8(ascii: ",")) }
                out.decimal(UInt64(x))
            }
            out.byte(UInt8(ascii: "]"))
            guard !out.overflowed else { return false }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<out.count]))
            return true
        }
        guard !done else { return }
        // Too big for the buffer: the general path, from the comma `separator()` already wrote.
        commas &= ~(1 << UInt64(depth))
        readingFieldsGeneral(r)
    }

    private mutating func readingFieldsGeneral(_ r: Reading) {
        field("device", r.device.rawValue)
        field("channel", r.channel.rawValue)
        field("time", r.time)
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

/// A day (since 1970-01-01) and its civil date.
struct DayCache {
    var days: Int64 = .min
    var civil: (Int64, Int, Int) = (0, 0, 0)
}

/// Plain stores into a fixed buffer; `overflowed` once something did not fit (what was written is then unusable).
private struct FixedBuffer {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    var count = 0
    var overflowed = false

    init(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
        base = buffer.baseAddress!
        capacity = buffer.count
    }

    @inline(__always)
    mutating func room(_ n: Int) -> Bool {
        if count + n <= capacity { return true }
        overflowed = true
        return false
    }

    @inline(__always)
    mutating func byte(_ b: UInt8) {
        guard room(1) else { return }
        base[count] = b
        count += 1
    }

    mutating func ascii(_ s: StaticString) {
        let n = s.utf8CodeUnitCount
        guard room(n) else { return }
        (base + count).update(from: s.utf8Start, count: n)
        count += n
    }

    /// `"s"`; strings with something to escape (or not stored as contiguous UTF-8) are left to the general path.
    mutating func quoted(_ s: String) {
        let copied: Void? = s.utf8.withContiguousStorageIfAvailable { utf8 in
            guard room(utf8.count + 2) else { return }
            base[count] = UInt8(ascii: "\"")
            var i = count + 1
            for b in utf8 {
                if b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                    overflowed = true
                    return
                }
                base[i] = b
                i += 1
            }
            base[i] = UInt8(ascii: "\"")
            count = i + 1
        }
        if copied == nil { overflowed = true }
    }

    mutating func decimal(_ v: UInt64) {
        var digits = 1, n = v
        while n >= 10 { n /= 10; digits += 1 }
        guard room(digits) else { return }
        var i = count + digits
        n = v
        repeat {
            i -= 1
            base[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: n % 10)
            n /= 10
        } while n > 0
        count += digits
    }

    mutating func int(_ v: Int64) {
        if v < 0 {
            byte(UInt8(ascii: "-"))
            decimal(UInt64(0) &- UInt64(bitPattern: v))
        } else {
            decimal(UInt64(v))
        }
    }

    /// Finite doubles in their shortest round-trip form (integral ones below 1e15 without a fraction); NaN and
    /// infinities, which JSON lacks, as null.
    mutating func double(_ d: Double) {
        guard d.isFinite else { ascii("null"); return }
        if d == d.rounded(), abs(d) < 1e15 {
            int(Int64(d))
        } else {
            var text = d.description
            text.withUTF8 { utf8 in
                guard room(utf8.count) else { return }
                (base + count).update(from: utf8.baseAddress!, count: utf8.count)
                count += utf8.count
            }
        }
    }

    /// `"YYYY-MM-DDThh:mm:ss.mmmZ"`, as `RFC3339.format(t, offsetSeconds: 0)`; `day` remembers the last date.
    mutating func rfc3339(_ t: UTCInstant, _ day: inout DayCache) {
        guard room(26) else { return }
        let ns = t.nanosecondsSinceEpoch
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let sod = Int(secs - days * 86400)
        if days != day.days { day = DayCache(days: days, civil: RFC3339.civilFromDays(days)) }
        let (y, m, d) = day.civil  // Int64 nanoseconds: 1677...2262, always four digits
        let p = base + count
        @inline(__always) func two(_ at: Int, _ v: Int) {
            p[at] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v / 10)
            p[at + 1] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
        }
        let year = Int(y), ms = Int(frac / 1_000_000)
        p[0] = UInt8(ascii: "\"")
        two(1, year / 100)
        two(3, year % 100)
        p[5] = UInt8(ascii: "-")
        two(6, m)
        p[8] = UInt8(ascii: "-")
        two(9, d)
        p[11] = UInt8(ascii: "T")
        two(12, sod / 3600)
        p[14] = UInt8(ascii: ":")
        two(15, sod / 60 % 60)
        p[17] = UInt8(ascii: ":")
        two(18, sod % 60)
        p[20] = UInt8(ascii: ".")
        p[21] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: ms / 100)
        two(22, ms % 100)
        p[24] = UInt8(ascii: "Z")
        p[25] = UInt8(ascii: "\"")
        count += 26
    }
}
