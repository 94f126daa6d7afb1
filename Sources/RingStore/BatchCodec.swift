import KilnTallyCore

/// The compact, pure, deterministic batch encoding of the reading ring store (issue 4). Exact for every field of
/// `Reading` (times to the nanosecond, doubles bit for bit, NaN payloads and -0.0 included); the same readings and
/// dictionary always give the same bytes.
///
/// A segment's batches share one `SeriesDictionary`: each batch carries the definitions of the series it uses first,
/// so replaying a segment's batches in order rebuilds the dictionary, and a batch cut off by recovery takes its
/// definitions with it. Apart from the dictionary, every batch stands alone (deltas and repeats never reach across
/// batches), so any batch decodes given the dictionary as it was after the batches before it — or any later state.
///
/// ## Format, version 1
///
/// The segment layer frames each body (length u32 + CRC-32C u32) and checks the CRC;
/// this codec adds no checksum of its own. Fixed-width fields are little-endian. `varint` is unsigned LEB128 (at most
/// 10 bytes, the 10th byte at most 1); `zigzag` is a signed value zigzag-mapped, then written as a varint;
/// `str` is `length:varint · UTF-8 bytes` (validated on decode).
///
///     batch      = version:u8 (= BatchCodec.formatVersion)
///                · firstSequence:varint · count:varint
///                · [baseTime:i64 (ns since epoch; the time of the first record), only when count > 0]
///                · newSeries:varint · [firstNewID:varint · newSeries × definition, only when newSeries > 0]
///                · count × record
///     definition = device:str · channel:str · unit:str (Unit.rawValue; empty = nil)
///                  (ids are implicit: firstNewID, firstNewID + 1, …; firstNewID is the dictionary's size before
///                  this batch, and lets a decoder with a missing or foreign dictionary fail instead of guessing)
///     record     = seriesID:varint
///                · [timeDelta:zigzag (ns, wrapping, vs the previous record of the batch), records after the first]
///                · flags:u8 · [status:u8, when flags bit 4] · value payload · raw payload
///     flags      = bits 0–3 value kind · bit 4 status follows · bits 5–7 raw code
///     status     = bits 0–2 quality (0 good, 1 invalid, 2 commFailure, 3 deviceFault, 4 manual, 5 timeout, 6 stale)
///                  · bit 3 clock synced · bits 4–7 the Modbus exception code for deviceFault, zero otherwise.
///                  Absent means good and synced.
///
/// Value kinds (payload):
///
///     0 none (–) · 1 false (–) · 2 true (–)
///     3 int (zigzag) · 4 uint (varint)
///     5 int-delta, 6 uint-delta (zigzag of the wrapping difference to the last int/uint of the same series in this
///       batch; the two differ only in the case they produce)
///     7 double (8 bytes, bit pattern) · 8 float (4 bytes; value = Double(Float(bitPattern:)), never chosen for NaN)
///     9 decimal (varint u: k = u & 15, op = u >> 4 & 1, m = unzigzag(u >> 5);
///       value = Double(m) / 10^k when op = 0, Double(m) * 1e-k when op = 1 — the second is how `raw × scale`
///       values come out of acquisition; the encoder only picks it when the result is bitwise identical)
///     10 repeat (–: the same bit pattern as the last double of the same series in this batch)
///     11 string (str) · 12–15 invalid
///
/// Raw code (the `raw` register words):
///
///     0 no words · 1 explicit: header:varint (count << 1 | fixed) then count words, each u16 when fixed, else varint
///     2–7 derived from the value's integer form S, no word bytes: int/uint/deltas → the bit pattern, bool → 0/1,
///       decimal → m, float → the Float bit pattern, double → the bit pattern, repeat → the S of the double it repeats.
///       Words are the low 16·w bits of S, split as the Modbus word order says:
///       2 = 1 word · 3 = 2 words ABCD · 4 = 2 words CDAB · 5 = 4 words ABCD · 6 = 4 words CDAB
///       7 = followed by ext:u8 = width (bits 0–1: 1, 2, 4 words) · order (bits 2–3: ABCD, CDAB, BADC, DCBA) · 0 bits 4–7
///
/// What the encoder picks (any choice decodes the same way; only size differs): for each double, the cheapest of
/// repeat, decimal (smallest k, unless a larger k makes the raw words derivable), float, double, counting value and
/// raw bytes; for integers, the delta when its varint is shorter; for raw words, a derivation when one reproduces them
/// exactly, else explicit words (fixed u16 when that is no longer than varints). The base time is a fixed 8 bytes
/// because a present-day time in ns as a zigzag varint takes 9.
///
/// An empty batch is valid (`count` 0, no base time, no records). Decode errors carry the offset of the offending
/// field, counted from the start of the body; a batch that fails leaves the caller's dictionary unchanged.
public enum BatchCodec {
    /// The first byte of every batch. A binary refuses batches of another version.
    public static let formatVersion: UInt8 = 1

    enum Kind {
        static let none: UInt8 = 0
        static let boolFalse: UInt8 = 1
        static let boolTrue: UInt8 = 2
        static let int: UInt8 = 3
        static let uint: UInt8 = 4
        static let intDelta: UInt8 = 5
        static let uintDelta: UInt8 = 6
        static let float64: UInt8 = 7
        static let float32: UInt8 = 8
        static let decimal: UInt8 = 9
        static let doubleRepeat: UInt8 = 10
        static let string: UInt8 = 11
    }

    static let statusFollows: UInt8 = 0x10

    enum RawCode {
        static let none: UInt8 = 0
        static let explicit: UInt8 = 1
        static let extended: UInt8 = 7
    }

    // MARK: Encoding

    /// Appends the encoding of `readings` (sequence numbers firstSequence, firstSequence+1, ...) to `out`.
    /// New series are added to `dictionary` and their definitions are written INTO THIS BATCH (before its records), so
    /// replaying a segment's batches in order rebuilds the dictionary, and a batch cut off by recovery takes its
    /// definitions with it.
    /// With `restatingDictionary` the batch repeats every definition of the segment (from id 0), so a reader that
    /// lost an earlier batch to damage can decode this one and all after it.
    public static func encode(
        firstSequence: UInt64, _ readings: [Reading], dictionary: inout SeriesDictionary, into out: inout [UInt8],
        restatingDictionary: Bool = false
    ) {
        encode(firstSequence: firstSequence, readings[...], dictionary: &dictionary, into: &out,
               restatingDictionary: restatingDictionary)
    }

    /// The same for a slice of a larger batch, which the store cuts into frames without copying it.
    public static func encode(
        firstSequence: UInt64, _ all: ArraySlice<Reading>, dictionary: inout SeriesDictionary, into out: inout [UInt8],
        restatingDictionary: Bool = false
    ) {
        // Zero-based from here on: `readings[i]` and `ids[i]` line up.
        all.withUnsafeBufferPointer { readings in
        // Interned ids of the records, in a scratch buffer (on the stack for small batches).
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: readings.count) { ids in
            let before = restatingDictionary ? 0 : dictionary.count
            for i in readings.indices { ids.initializeElement(at: i, to: dictionary.intern(SeriesKey(readings[i]))) }
            let added = dictionary.count - before

            out.reserveCapacity(out.count + 24 + readings.count * 12 + added * 24)
            out.append(formatVersion)
            out.appendVarint(firstSequence)
            out.appendVarint(UInt64(readings.count))
            var previousTime: Int64 = 0
            if let first = readings.first {
                previousTime = first.time.nanosecondsSinceEpoch
                out.appendLE(UInt64(bitPattern: previousTime))
            }
            out.appendVarint(UInt64(added))
            if added > 0 {
                out.appendVarint(UInt64(before))
                for key in dictionary.keys[before...] {
                    out.appendString(key.device.rawValue)
                    out.appendString(key.channel.rawValue)
                    out.appendString(key.unit?.rawValue ?? "")
                }
            }

            withRunStates(records: readings.count) { states in
                let last = readings.count - 1
                for i in readings.indices {
                    let id = ids[i]
                    out.appendVarint(UInt64(id))
                    let t = readings[i].time.nanosecondsSinceEpoch
                    if i > 0 { out.appendVarint(zigzag(t &- previousTime)) }
                    previousTime = t
                    var state = states[id]
                    let updated = encodeRecord(readings[i], state: &state, into: &out)
                    if updated && i < last { states[id] = state }
                }
            }
        }
        }
    }

    /// Per-series memory within one batch, for the delta and repeat kinds.
    struct RunState {
        var intBits: UInt64 = 0
        var doubleBits: UInt64 = 0
        var doubleSource: UInt64 = 0
        var hasInt = false
        var hasDouble = false
    }

    /// The run states of one batch: the first few series in a stack buffer searched linearly (a batch usually holds
    /// one poll of a few devices), the rest in a hash map. No heap allocation for small batches.
    struct RunStates {
        struct Slot {
            var id: UInt32
            var state: RunState
        }

        let slots: UnsafeMutableBufferPointer<Slot>
        var used = 0
        var spill: [UInt32: RunState] = [:]

        subscript(id: UInt32) -> RunState {
            get {
                for i in 0..<used where slots[i].id == id { return slots[i].state }
                return spill.isEmpty ? RunState() : spill[id, default: RunState()]
            }
            set {
                for i in 0..<used where slots[i].id == id {
                    slots[i].state = newValue
                    return
                }
                if used < slots.count {
                    slots.initializeElement(at: used, to: Slot(id: id, state: newValue))
                    used += 1
                } else {
                    spill[id] = newValue
                }
            }
        }
    }

    @inline(__always)
    static func withRunStates<R, E: Error>(records: Int, _ body: (inout RunStates) throws(E) -> R) throws(E) -> R {
        try withUnsafeTemporaryAllocation(of: RunStates.Slot.self, capacity: Swift.min(Swift.max(records, 1), 16)) {
            (slots) throws(E) -> R in
            var states = RunStates(slots: slots)
            return try body(&states)
        }
    }

    /// How the raw words of one record are written.
    struct RawPlan {
        var code: UInt8
        var ext: UInt8 = 0
        var fixed = false
        var cost: Int

        static let none = RawPlan(code: RawCode.none, cost: 0)
    }

    /// Writes flags, status, value and raw of one record. Returns whether `state` changed.
    @inline(__always)
    static func encodeRecord(_ r: Reading, state: inout RunState, into out: inout [UInt8]) -> Bool {
        let explicit = r.raw.isEmpty ? RawPlan.none : explicitRawPlan(r.raw)
        var kind: UInt8
        var word: UInt64 = 0
        var rawPlan = explicit
        var updated = false
        switch r.value {
        case .none:
            kind = Kind.none
        case .string:
            kind = Kind.string
        case .bool(let b):
            kind = b ? Kind.boolTrue : Kind.boolFalse
            rawPlan = plan(raw: r.raw, source: b ? 1 : 0, explicit: explicit)
        case .int(let v):
            let bits = UInt64(bitPattern: v)
            kind = Kind.int
            word = zigzag(v)
            if state.hasInt {
                let d = zigzag(Int64(bitPattern: bits &- state.intBits))
                if varintSize(d) < varintSize(word) { kind = Kind.intDelta; word = d }
            }
            rawPlan = plan(raw: r.raw, source: bits, explicit: explicit)
            state.intBits = bits
            state.hasInt = true
            updated = true
        case .uint(let v):
            kind = Kind.uint
            word = v
            if state.hasInt {
                let d = zigzag(Int64(bitPattern: v &- state.intBits))
                if varintSize(d) < varintSize(word) { kind = Kind.uintDelta; word = d }
            }
            rawPlan = plan(raw: r.raw, source: v, explicit: explicit)
            state.intBits = v
            state.hasInt = true
            updated = true
        case .double(let x):
            let p = planDouble(x, state: state, raw: r.raw, explicit: explicit)
            kind = p.kind
            word = p.word
            rawPlan = p.raw
            state.doubleBits = x.bitPattern
            state.doubleSource = p.source
            state.hasDouble = true
            updated = true
        }

        let statusByte: UInt8? = (r.quality == .good && r.clockSynchronized)
            ? nil : QualityCode.code(r.quality) | (r.clockSynchronized ? 8 : 0) | r.exceptionCode << 4
        out.append(kind | (statusByte == nil ? 0 : statusFollows) | rawPlan.code << 5)
        if let statusByte { out.append(statusByte) }

        switch kind {
        case Kind.int, Kind.uint, Kind.intDelta, Kind.uintDelta, Kind.decimal:
            out.appendVarint(word)
        case Kind.float64:
            out.appendLE(word)
        case Kind.float32:
            out.appendLE(UInt32(truncatingIfNeeded: word))
        case Kind.string:
            if case .string(let s) = r.value { out.appendString(s) }
        default:
            break
        }

        switch rawPlan.code {
        case RawCode.none:
            break
        case RawCode.explicit:
            out.appendVarint(UInt64(r.raw.count) << 1 | (rawPlan.fixed ? 1 : 0))
            if rawPlan.fixed {
                for w in r.raw { out.append(UInt8(truncatingIfNeeded: w)); out.append(UInt8(truncatingIfNeeded: w >> 8)) }
            } else {
                for w in r.raw { out.appendVarint(UInt64(w)) }
            }
        case RawCode.extended:
            out.append(rawPlan.ext)
        default:
            break  // derived shortcut: nothing to write
        }
        return updated
    }

    /// Chooses the cheapest exact encoding of a double (value bytes plus raw bytes).
    @inline(__always)
    static func planDouble(_ x: Double, state: RunState, raw: [UInt16], explicit: RawPlan)
        -> (kind: UInt8, word: UInt64, source: UInt64, raw: RawPlan)
    {
        let bits = x.bitPattern
        var best: (kind: UInt8, word: UInt64, source: UInt64, raw: RawPlan) = (Kind.float64, bits, bits, explicit)
        var bestCost = Int.max
        func consider(_ kind: UInt8, _ word: UInt64, _ source: UInt64, valueCost: Int) -> RawPlan {
            let rp = plan(raw: raw, source: source, explicit: explicit)
            if valueCost + rp.cost < bestCost {
                bestCost = valueCost + rp.cost
                best = (kind, word, source, rp)
            }
            return rp
        }
        if state.hasDouble && state.doubleBits == bits {
            let rp = consider(Kind.doubleRepeat, 0, state.doubleSource, valueCost: 0)
            if rp.cost == 0 { return best }
        }
        if x.isFinite {
            // Smallest k first: the smallest mantissa wins unless a larger k makes the raw words derivable.
            for k in 0..<16 {
                let scaled = x * powerOfTen(k)
                if !(Swift.abs(scaled) < 0x1p50) { break }
                let m = Int64(scaled.rounded())
                let op: UInt64
                if decimalValue(m, k: k, multiply: false).bitPattern == bits {
                    op = 0
                } else if decimalValue(m, k: k, multiply: true).bitPattern == bits {
                    op = 1
                } else {
                    continue
                }
                let word = zigzag(m) << 5 | op << 4 | UInt64(k)
                let rp = consider(Kind.decimal, word, UInt64(bitPattern: m), valueCost: varintSize(word))
                if raw.isEmpty || rp.cost == 0 { break }
            }
        }
        if !x.isNaN {
            let f = Float(x)
            if Double(f).bitPattern == bits {
                _ = consider(Kind.float32, UInt64(f.bitPattern), UInt64(f.bitPattern), valueCost: 4)
            }
        }
        _ = consider(Kind.float64, bits, bits, valueCost: 8)
        return best
    }

    /// The raw plan for a value whose integer form is `source`: derived when the words match, else `explicit`.
    @inline(__always)
    static func plan(raw: [UInt16], source: UInt64, explicit: RawPlan) -> RawPlan {
        if raw.isEmpty { return .none }
        let width = raw.count
        guard width == 1 || width == 2 || width == 4 else { return explicit }
        for order in 0..<UInt8(4) {
            if width == 1 && order & 1 != 0 { continue }
            var match = true
            for i in 0..<width where raw[i] != derivedWord(source, width: width, order: order, index: i) {
                match = false
                break
            }
            guard match else { continue }
            switch (width, order) {
            case (1, 0): return RawPlan(code: 2, cost: 0)
            case (2, 0): return RawPlan(code: 3, cost: 0)
            case (2, 1): return RawPlan(code: 4, cost: 0)
            case (4, 0): return RawPlan(code: 5, cost: 0)
            case (4, 1): return RawPlan(code: 6, cost: 0)
            default:
                let widthCode: UInt8 = width == 1 ? 0 : width == 2 ? 1 : 2
                return RawPlan(code: RawCode.extended, ext: widthCode | order << 2, cost: 1)
            }
        }
        return explicit
    }

    static func explicitRawPlan(_ raw: [UInt16]) -> RawPlan {
        var varintBytes = 0
        for w in raw { varintBytes += w < 0x80 ? 1 : w < 0x4000 ? 2 : 3 }
        let fixed = 2 * raw.count <= varintBytes
        let header = UInt64(raw.count) << 1 | (fixed ? 1 : 0)
        return RawPlan(code: RawCode.explicit, fixed: fixed, cost: varintSize(header) + (fixed ? 2 * raw.count : varintBytes))
    }

    /// Word `index` of the low `16 × width` bits of `source` in Modbus word order `order` (0 ABCD, 1 CDAB, 2 BADC,
    /// 3 DCBA): bit 0 reverses the words, bit 1 swaps the bytes in each word.
    @inline(__always)
    static func derivedWord(_ source: UInt64, width: Int, order: UInt8, index: Int) -> UInt16 {
        let position = order & 1 != 0 ? width - 1 - index : index
        let w = UInt16(truncatingIfNeeded: source >> UInt64(16 * (width - 1 - position)))
        return order & 2 != 0 ? w.byteSwapped : w
    }

    @inline(__always)
    static func decimalValue(_ m: Int64, k: Int, multiply: Bool) -> Double {
        multiply ? Double(m) * negativePowerOfTen(k) : Double(m) / powerOfTen(k)
    }

    /// 10^k, exact for 0 ≤ k ≤ 15.
    @inline(__always)
    static func powerOfTen(_ k: Int) -> Double {
        switch k {
        case 0: 1
        case 1: 10
        case 2: 100
        case 3: 1e3
        case 4: 1e4
        case 5: 1e5
        case 6: 1e6
        case 7: 1e7
        case 8: 1e8
        case 9: 1e9
        case 10: 1e10
        case 11: 1e11
        case 12: 1e12
        case 13: 1e13
        case 14: 1e14
        default: 1e15
        }
    }

    /// The double nearest 10^-k (what a configured `scale = 0.001` parses to), 0 ≤ k ≤ 15.
    @inline(__always)
    static func negativePowerOfTen(_ k: Int) -> Double {
        switch k {
        case 0: 1
        case 1: 0.1
        case 2: 0.01
        case 3: 0.001
        case 4: 0.0001
        case 5: 1e-5
        case 6: 1e-6
        case 7: 1e-7
        case 8: 1e-8
        case 9: 1e-9
        case 10: 1e-10
        case 11: 1e-11
        case 12: 1e-12
        case 13: 1e-13
        case 14: 1e-14
        default: 1e-15
        }
    }

    @inline(__always)
    static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    @inline(__always)
    static func unzigzag(_ u: UInt64) -> Int64 { Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1))) }

    @inline(__always)
    static func varintSize(_ v: UInt64) -> Int { v == 0 ? 1 : (70 - v.leadingZeroBitCount) / 7 }

    // MARK: Decoding

    /// Decodes one batch body; learns its dictionary additions into `dictionary` (which must hold everything earlier
    /// batches of the segment defined; holding more, e.g. the whole segment's, is fine). On error `dictionary` is
    /// left unchanged.
    public static func decode(
        _ body: ArraySlice<UInt8>, dictionary: inout SeriesDictionary
    ) throws(BatchDecodeError) -> (firstSequence: UInt64, readings: [Reading]) {
        var readings: [Reading] = []
        let summary = try parse(body, dictionary: &dictionary, readings: &readings, materialize: true)
        return (summary.firstSequence, readings)
    }

    /// Reads the summary AND learns the dictionary additions, but does not build Reading values (fast path at open).
    /// Validates exactly what `decode` validates: it throws if and only if `decode` would.
    public static func summarize(
        _ body: ArraySlice<UInt8>, dictionary: inout SeriesDictionary
    ) throws(BatchDecodeError) -> BatchSummary {
        var readings: [Reading] = []
        return try parse(body, dictionary: &dictionary, readings: &readings, materialize: false)
    }

    static func parse(
        _ body: ArraySlice<UInt8>, dictionary: inout SeriesDictionary, readings: inout [Reading], materialize: Bool
    ) throws(BatchDecodeError) -> BatchSummary {
        var d = dictionary  // learn into a copy: a batch that fails leaves the caller's dictionary as it was
        let summary = try body.withUnsafeBufferPointer { (buf) throws(BatchDecodeError) -> BatchSummary in
            var c = Cursor(buf)
            let version = try c.u8("format version")
            guard version == formatVersion else {
                throw BatchDecodeError(
                    offset: 0, reason: "unsupported batch format version \(version) (this build reads version \(formatVersion))")
            }
            let firstSequence = try c.varint("first sequence number")
            let countAt = c.pos
            let count64 = try c.varint("record count")
            // Every record takes at least 2 bytes (series id, flags): bounds the allocation by the input.
            guard count64 <= UInt64(c.remaining / 2) else {
                throw BatchDecodeError(offset: countAt, reason: "record count \(count64) cannot fit in the \(c.remaining) bytes left")
            }
            let count = Int(count64)
            var time: Int64 = 0
            if count > 0 { time = Int64(bitPattern: try c.u64("base time")) }

            let newAt = c.pos
            let newCount64 = try c.varint("new series count")
            guard newCount64 <= UInt64(c.remaining / 3) else {
                throw BatchDecodeError(offset: newAt, reason: "new series count \(newCount64) cannot fit in the \(c.remaining) bytes left")
            }
            if newCount64 > 0 {
                let firstAt = c.pos
                let firstNew = try c.varint("first new series id")
                guard firstNew <= UInt64(d.count) else {
                    throw BatchDecodeError(
                        offset: firstAt,
                        reason: "batch defines series from id \(firstNew) but the dictionary holds only \(d.count) "
                            + "(an earlier batch of the segment is missing, or the dictionary belongs to another segment)")
                }
                for j in 0..<Int(newCount64) {
                    let defAt = c.pos
                    let device = String(decoding: try c.string("series device"), as: UTF8.self)
                    let channel = String(decoding: try c.string("series channel"), as: UTF8.self)
                    let unitAt = c.pos
                    let unitBytes = try c.string("series unit")
                    var unit: Unit?
                    if !unitBytes.isEmpty {
                        let name = String(decoding: unitBytes, as: UTF8.self)
                        guard let u = Unit(rawValue: name) else {
                            throw BatchDecodeError(offset: unitAt, reason: "unknown unit \"\(name)\"")
                        }
                        unit = u
                    }
                    let key = SeriesKey(device: DeviceID(device), channel: ChannelID(channel), unit: unit)
                    let id = firstNew + UInt64(j)
                    if id < UInt64(d.count) {
                        guard d.keys[Int(id)] == key else {
                            throw BatchDecodeError(
                                offset: defAt, reason: "series \(id) is defined as \(key) but the dictionary has \(d.keys[Int(id)])")
                        }
                    } else {
                        if let existing = d.id(for: key) {
                            throw BatchDecodeError(offset: defAt, reason: "series \(key) is defined again as \(id) (already \(existing))")
                        }
                        guard d.count < Int(UInt32.max) else {
                            throw BatchDecodeError(offset: defAt, reason: "series dictionary is full")
                        }
                        d.append(key)
                    }
                }
            }

            let seriesCount = UInt64(d.count)
            var minTime = Int64.max
            var maxTime = Int64.min
            if materialize { readings.reserveCapacity(readings.count + count) }
            try withRunStates(records: count) { (states) throws(BatchDecodeError) in
                for i in 0..<count {
                    let idAt = c.pos
                    let id64 = try c.varint("series id")
                    guard id64 < seriesCount else {
                        throw BatchDecodeError(offset: idAt, reason: "series id \(id64) is not in the dictionary (\(seriesCount) series)")
                    }
                    let id = UInt32(id64)
                    if i > 0 { time = time &+ unzigzag(try c.varint("time delta")) }
                    minTime = Swift.min(minTime, time)
                    maxTime = Swift.max(maxTime, time)

                    let flagsAt = c.pos
                    let flags = try c.u8("record flags")
                    var quality = Quality.good
                    var synced = true
                    var exceptionCode: UInt8 = 0
                    if flags & statusFollows != 0 {
                        let statusAt = c.pos
                        let status = try c.u8("record status")
                        guard let q = QualityCode.quality(status & 7), status & 0xF0 == 0 || q == .deviceFault else {
                            throw BatchDecodeError(offset: statusAt, reason: "bad record status byte \(status)")
                        }
                        quality = q
                        synced = status & 8 != 0
                        exceptionCode = status >> 4
                    }

                    let kind = flags & 0x0F
                    var state = states[id]
                    var updated = false
                    var value = ReadingValue.none
                    var source: UInt64 = 0
                    var hasSource = true
                    switch kind {
                    case Kind.none:
                        hasSource = false
                    case Kind.boolFalse:
                        value = .bool(false)
                    case Kind.boolTrue:
                        value = .bool(true)
                        source = 1
                    case Kind.int, Kind.uint, Kind.intDelta, Kind.uintDelta:
                        let u = try c.varint("integer value")
                        switch kind {
                        case Kind.int: source = UInt64(bitPattern: unzigzag(u))
                        case Kind.uint: source = u
                        default:
                            guard state.hasInt else {
                                throw BatchDecodeError(offset: flagsAt, reason: "integer delta without an earlier integer of series \(id) in the batch")
                            }
                            source = state.intBits &+ UInt64(bitPattern: unzigzag(u))
                        }
                        value = kind == Kind.int || kind == Kind.intDelta ? .int(Int64(bitPattern: source)) : .uint(source)
                        state.intBits = source
                        state.hasInt = true
                        updated = true
                    case Kind.float64, Kind.float32, Kind.decimal, Kind.doubleRepeat:
                        let x: Double
                        switch kind {
                        case Kind.float64:
                            source = try c.u64("double value")
                            x = Double(bitPattern: source)
                        case Kind.float32:
                            let b = try c.u32("float value")
                            source = UInt64(b)
                            x = Double(Float(bitPattern: b))
                        case Kind.decimal:
                            let u = try c.varint("decimal value")
                            let m = unzigzag(u >> 5)
                            source = UInt64(bitPattern: m)
                            x = decimalValue(m, k: Int(u & 15), multiply: u & 16 != 0)
                        default:
                            guard state.hasDouble else {
                                throw BatchDecodeError(offset: flagsAt, reason: "repeat without an earlier double of series \(id) in the batch")
                            }
                            source = state.doubleSource
                            x = Double(bitPattern: state.doubleBits)
                        }
                        value = .double(x)
                        state.doubleBits = x.bitPattern
                        state.doubleSource = source
                        state.hasDouble = true
                        updated = true
                    case Kind.string:
                        let bytes = try c.string("string value")
                        if materialize { value = .string(String(decoding: bytes, as: UTF8.self)) }
                        hasSource = false
                    default:
                        throw BatchDecodeError(offset: flagsAt, reason: "unknown value kind \(kind)")
                    }
                    if updated && i < count - 1 { states[id] = state }

                    var raw: [UInt16] = []
                    let rawCode = flags >> 5
                    switch rawCode {
                    case RawCode.none:
                        break
                    case RawCode.explicit:
                        let headerAt = c.pos
                        let header = try c.varint("raw word count")
                        let fixed = header & 1 != 0
                        let n = header >> 1
                        guard n <= UInt64(fixed ? c.remaining / 2 : c.remaining) else {
                            throw BatchDecodeError(offset: headerAt, reason: "raw word count \(n) cannot fit in the \(c.remaining) bytes left")
                        }
                        if fixed {
                            if materialize {
                                raw.reserveCapacity(Int(n))
                                for _ in 0..<Int(n) { raw.append(c.u16Unchecked()) }
                            } else {
                                c.pos += 2 * Int(n)
                            }
                        } else {
                            if materialize { raw.reserveCapacity(Int(n)) }
                            for _ in 0..<Int(n) {
                                let wordAt = c.pos
                                let w = try c.varint("raw word")
                                guard w <= 0xFFFF else {
                                    throw BatchDecodeError(offset: wordAt, reason: "raw word \(w) exceeds 16 bits")
                                }
                                if materialize { raw.append(UInt16(w)) }
                            }
                        }
                    default:
                        guard hasSource else {
                            throw BatchDecodeError(offset: flagsAt, reason: "raw words derived from a value of kind \(kind), which has no integer form")
                        }
                        let width: Int
                        let order: UInt8
                        switch rawCode {
                        case 2: (width, order) = (1, 0)
                        case 3: (width, order) = (2, 0)
                        case 4: (width, order) = (2, 1)
                        case 5: (width, order) = (4, 0)
                        case 6: (width, order) = (4, 1)
                        default:
                            let extAt = c.pos
                            let ext = try c.u8("raw derivation")
                            guard ext & 0xF0 == 0, ext & 3 != 3 else {
                                throw BatchDecodeError(offset: extAt, reason: "bad raw derivation byte \(ext)")
                            }
                            width = 1 << Int(ext & 3)
                            order = ext >> 2
                        }
                        if materialize {
                            raw.reserveCapacity(width)
                            for w in 0..<width { raw.append(derivedWord(source, width: width, order: order, index: w)) }
                        }
                    }

                    if materialize {
                        let key = d.keys[Int(id)]
                        readings.append(Reading(
                            device: key.device, channel: key.channel, time: UTCInstant(nanosecondsSinceEpoch: time),
                            value: value, unit: key.unit, quality: quality, clockSynchronized: synced, raw: raw,
                            exceptionCode: exceptionCode))
                    }
                }
            }
            guard c.remaining == 0 else {
                throw BatchDecodeError(offset: c.pos, reason: "\(c.remaining) trailing bytes after the last record")
            }
            return BatchSummary(
                firstSequence: firstSequence, count: count,
                minTime: UTCInstant(nanosecondsSinceEpoch: minTime), maxTime: UTCInstant(nanosecondsSinceEpoch: maxTime))
        }
        dictionary = d
        return summary
    }

    /// A bounds-checked reader over a batch body that knows its offset.
    struct Cursor {
        let buf: UnsafeBufferPointer<UInt8>
        var pos = 0

        init(_ buf: UnsafeBufferPointer<UInt8>) { self.buf = buf }

        var remaining: Int { buf.count - pos }

        @inline(__always)
        mutating func u8(_ what: StaticString) throws(BatchDecodeError) -> UInt8 {
            guard pos < buf.count else { throw truncated(what, at: pos) }
            let b = buf[pos]
            pos += 1
            return b
        }

        /// A little-endian u16; the caller has checked that 2 bytes remain.
        @inline(__always)
        mutating func u16Unchecked() -> UInt16 {
            let v = UInt16(buf[pos]) | UInt16(buf[pos + 1]) << 8
            pos += 2
            return v
        }

        @inline(__always)
        mutating func u32(_ what: StaticString) throws(BatchDecodeError) -> UInt32 {
            guard remaining >= 4 else { throw truncated(what, at: pos) }
            var v: UInt32 = 0
            for i in 0..<4 { v |= UInt32(buf[pos + i]) << UInt32(8 * i) }
            pos += 4
            return v
        }

        @inline(__always)
        mutating func u64(_ what: StaticString) throws(BatchDecodeError) -> UInt64 {
            guard remaining >= 8 else { throw truncated(what, at: pos) }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(buf[pos + i]) << UInt64(8 * i) }
            pos += 8
            return v
        }

        @inline(__always)
        mutating func varint(_ what: StaticString) throws(BatchDecodeError) -> UInt64 {
            if pos < buf.count, buf[pos] < 0x80 {
                defer { pos += 1 }
                return UInt64(buf[pos])
            }
            return try varintSlow(what)
        }

        mutating func varintSlow(_ what: StaticString) throws(BatchDecodeError) -> UInt64 {
            let start = pos
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while pos < buf.count {
                let b = buf[pos]
                pos += 1
                if shift == 63 && b > 1 {
                    throw BatchDecodeError(offset: start, reason: "\(what): varint overflows 64 bits")
                }
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            throw truncated(what, at: start)
        }

        /// A length-prefixed string's bytes, validated as UTF-8.
        @inline(__always)
        mutating func string(_ what: StaticString) throws(BatchDecodeError) -> UnsafeBufferPointer<UInt8> {
            let start = pos
            let n = try varint(what)
            guard n <= UInt64(remaining) else { throw truncated(what, at: start) }
            let bytes = UnsafeBufferPointer(rebasing: buf[pos..<pos + Int(n)])
            guard isValidUTF8(bytes) else {
                throw BatchDecodeError(offset: start, reason: "\(what) is not valid UTF-8")
            }
            pos += Int(n)
            return bytes
        }

        func truncated(_ what: StaticString, at offset: Int) -> BatchDecodeError {
            BatchDecodeError(offset: offset, reason: "truncated \(what) (body is \(buf.count) bytes)")
        }
    }

    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var ascii = true
        for b in bytes where b >= 0x80 { ascii = false; break }
        if ascii { return true }
        var it = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        while true {
            switch parser.parseScalar(from: &it) {
            case .valid: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

/// A batch body that cannot be decoded: where (offset from the start of the body) and why.
public struct BatchDecodeError: Error, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "batch decode error at byte \(offset): \(reason)" }
}

/// Summary of a batch without materializing readings (used to build the in-memory index at open).
///
/// An empty batch has `minTime` = `Int64.max` ns and `maxTime` = `Int64.min` ns, which merge neutrally into ranges.
/// Summary of a batch without materializing readings: the same facts the segment layer keeps per frame.
public typealias BatchSummary = FrameSummary
