#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnTallyCore
@testable import RingStore
import Testing

/// A small, seedable generator so the property tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Batch codec")
struct BatchCodecTests {
    // MARK: Helpers

    static let t0 = UTCInstant(secondsSinceEpoch: 1_795_420_800)  // 2026-11-23T08:00:00Z

    /// Field-by-field equality that compares doubles by bit pattern (Reading's == says NaN != NaN and -0 == 0).
    static func exactlyEqual(_ a: Reading, _ b: Reading) -> Bool {
        guard a.device == b.device, a.channel == b.channel, a.time == b.time, a.unit == b.unit, a.quality == b.quality,
              a.clockSynchronized == b.clockSynchronized, a.raw == b.raw
        else { return false }
        switch (a.value, b.value) {
        case (.double(let x), .double(let y)): return x.bitPattern == y.bitPattern
        case (.string(let x), .string(let y)): return Array(x.utf8) == Array(y.utf8)
        default: return a.value == b.value
        }
    }

    static func expectExact(_ got: [Reading], _ want: [Reading], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(got.count == want.count, sourceLocation: sourceLocation)
        for (i, (g, w)) in zip(got, want).enumerated() where !exactlyEqual(g, w) {
            Issue.record("reading \(i) differs:\n got  \(g)\n want \(w)", sourceLocation: sourceLocation)
        }
    }

    static func reading(
        _ value: ReadingValue, device: DeviceID = "belt1", channel: ChannelID = "rate", unit: Unit? = .tonnePerHour,
        time: UTCInstant = t0, quality: Quality = .good, synced: Bool = true, raw: [UInt16] = []
    ) -> Reading {
        Reading(device: device, channel: channel, time: time, value: value, unit: unit, quality: quality,
                clockSynchronized: synced, raw: raw)
    }

    static func encode(_ readings: [Reading], firstSequence: UInt64 = 1) -> [UInt8] {
        var d = SeriesDictionary()
        var out: [UInt8] = []
        BatchCodec.encode(firstSequence: firstSequence, readings, dictionary: &d, into: &out)
        return out
    }

    /// Encodes with a fresh dictionary, decodes and summarizes with fresh ones, checks everything; returns the bytes.
    @discardableResult
    static func roundTrip(
        _ readings: [Reading], firstSequence: UInt64 = 1, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [UInt8] {
        var encoderDictionary = SeriesDictionary()
        var out: [UInt8] = []
        BatchCodec.encode(firstSequence: firstSequence, readings, dictionary: &encoderDictionary, into: &out)
        var d = SeriesDictionary()
        let (seq, got) = try BatchCodec.decode(out[...], dictionary: &d)
        #expect(seq == firstSequence, sourceLocation: sourceLocation)
        expectExact(got, readings, sourceLocation: sourceLocation)
        #expect(d == encoderDictionary, sourceLocation: sourceLocation)
        var s = SeriesDictionary()
        let summary = try BatchCodec.summarize(out[...], dictionary: &s)
        #expect(summary == expectedSummary(firstSequence, readings), sourceLocation: sourceLocation)
        #expect(s == encoderDictionary, sourceLocation: sourceLocation)
        return out
    }

    static func expectedSummary(_ firstSequence: UInt64, _ readings: [Reading]) -> BatchSummary {
        BatchSummary(
            firstSequence: firstSequence, count: readings.count,
            minTime: readings.map(\.time).min() ?? UTCInstant(nanosecondsSinceEpoch: .max),
            maxTime: readings.map(\.time).max() ?? UTCInstant(nanosecondsSinceEpoch: .min))
    }

    /// Outcome of decoding `body` with `dictionary`, as a comparable value; also checks that summarize agrees and that
    /// a failure leaves the dictionary untouched.
    static func outcome(_ body: ArraySlice<UInt8>, dictionary: SeriesDictionary = .init(),
                        sourceLocation: SourceLocation = #_sourceLocation) -> BatchSummary? {
        var d1 = dictionary
        var d2 = dictionary
        let decoded: (UInt64, [Reading])?
        do { decoded = try BatchCodec.decode(body, dictionary: &d1) } catch {
            decoded = nil
            #expect(d1 == dictionary, "a failed decode changed the dictionary", sourceLocation: sourceLocation)
        }
        let summary: BatchSummary?
        do { summary = try BatchCodec.summarize(body, dictionary: &d2) } catch {
            summary = nil
            #expect(d2 == dictionary, "a failed summarize changed the dictionary", sourceLocation: sourceLocation)
        }
        #expect((decoded == nil) == (summary == nil), "decode and summarize disagree on validity", sourceLocation: sourceLocation)
        if let decoded, let summary {
            #expect(summary == expectedSummary(decoded.0, decoded.1), sourceLocation: sourceLocation)
            #expect(d1 == d2, sourceLocation: sourceLocation)
        }
        return summary
    }

    static func decodeError(_ body: [UInt8], dictionary: SeriesDictionary = .init()) -> BatchDecodeError? {
        var d = dictionary
        do {
            _ = try BatchCodec.decode(body[...], dictionary: &d)
            return nil
        } catch {
            var d2 = dictionary
            do {
                _ = try BatchCodec.summarize(body[...], dictionary: &d2)
                Issue.record("summarize accepted what decode refused: \(error)")
            } catch let e2 {
                #expect(e2.offset == error.offset)
            }
            return error
        }
    }

    // MARK: Round-trip tables

    static let intEdges: [Int64] = [0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, -8193, 1 << 31, -(1 << 31),
                                    Int64(Int32.max), Int64(Int32.min), 1 << 53, -(1 << 53) - 1, .max, .min, .max - 1, .min + 1]
    static let uintEdges: [UInt64] = [0, 1, 127, 128, 16383, 16384, 65535, 65536, 1 << 32, (1 << 63) - 1, 1 << 63, .max, .max - 1]
    static let doubleEdges: [Double] = [
        0, -0.0, 1, -1, 30.94, 0.1, 0.2, 0.3, 1.2, 1e-15, 1e15, 1e16, 123456.789, -0.001, .pi, -.pi, 1.0 / 3.0,
        .infinity, -.infinity, .nan, -.nan, .signalingNaN, Double(bitPattern: 0x7FF0_0000_0000_0001),
        Double(bitPattern: 0xFFF8_DEAD_BEEF_0001), Double(bitPattern: 0x7FF4_0000_0000_0000),
        .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
        -.greatestFiniteMagnitude, .ulpOfOne, 1 + .ulpOfOne, Double(Float.pi), Double(Float.greatestFiniteMagnitude),
        Double(Float.leastNonzeroMagnitude), Double(Float.nan), 0x1p50, 0x1p50 - 1, -0x1p52, 0x1p63, 0x1p53 + 2,
        Double(30940) * 0.001, Double(30941) * 0.001, Double(1200) * 0.001, Double(-5) * 0.1, Double(123_456_789) * 1e-6,
        Double(65535) * 0.01, Double(7) * 1e-15, 12.5, 4.0e-7,
    ]

    @Test func everyValueKindAndEdgeRoundTripsExactly() throws {
        var values: [ReadingValue] = [.none, .bool(true), .bool(false)]
        values += Self.intEdges.map { .int($0) }
        values += Self.uintEdges.map { .uint($0) }
        values += Self.doubleEdges.map { .double($0) }
        values += ["", "a", "belt 1 ⚖️", "温度", "😀👍🏽", "nul\u{0}inside", "\u{10FFFF}\u{FFFD}\u{7F}",
                   String(repeating: "x", count: 10_000), String(repeating: "ü", count: 300)].map { .string($0) }
        // Each alone (first record of a batch), and all together in one batch (one series, so repeats and deltas apply).
        for (i, v) in values.enumerated() {
            try Self.roundTrip([Self.reading(v)], firstSequence: UInt64(i))
        }
        let all = values.enumerated().map { i, v in
            Self.reading(v, time: Self.t0.adding(.milliseconds(i)))
        }
        try Self.roundTrip(all)
        // Twice each in a row (repeat / delta 0), and with raw words that derive from the value and that don't.
        var doubled: [Reading] = []
        for (i, v) in values.enumerated() {
            var r = Self.reading(v, time: Self.t0.adding(.milliseconds(i)), raw: [UInt16(i & 0xFFFF)])
            doubled.append(r)
            r.raw = [1, 2, 3]
            doubled.append(r)
        }
        try Self.roundTrip(doubled)
    }

    @Test func modbusExceptionCodesRoundTripWithTheirFault() throws {
        // Every code a Modbus device can answer with (1-11), for both clock states; the code rides in the status
        // byte's high nibble, so a reading that is not a device fault never carries one.
        var readings: [Reading] = []
        for code in UInt8(1)...11 {
            for synced in [true, false] {
                var r = Self.reading(.none, channel: ChannelID("c\(code)"), time: Self.t0.adding(.milliseconds(Int(code))),
                                     quality: .deviceFault, synced: synced)
                r.exceptionCode = code
                readings.append(r)
            }
        }
        try Self.roundTrip(readings)
        let timedOut = Reading(device: "d", channel: "c", time: Self.t0, value: .none, quality: .timeout, exceptionCode: 6)
        #expect(timedOut.exceptionCode == 0)
        try Self.roundTrip([timedOut])
    }

    @Test func everyUnitQualityAndClockFlagRoundTrips() throws {
        var readings: [Reading] = []
        var i = 0
        for unit in [nil] + Unit.allCases.map(Optional.some) {
            for quality in Quality.allCases {
                for synced in [true, false] {
                    readings.append(Self.reading(.uint(UInt64(i)), channel: ChannelID("c\(i % 7)"), unit: unit,
                                                 time: Self.t0.adding(.microseconds(i)), quality: quality, synced: synced))
                    i += 1
                }
            }
        }
        try Self.roundTrip(readings)
        // Unit `.none` and no unit are different series.
        let a = Self.reading(.int(1), unit: Unit.none)
        let b = Self.reading(.int(1), unit: nil)
        try Self.roundTrip([a, b, a])
        var d = SeriesDictionary()
        var out: [UInt8] = []
        BatchCodec.encode(firstSequence: 0, [a, b], dictionary: &d, into: &out)
        #expect(d.count == 2)
    }

    @Test func seriesNamesOfAnyUTF8RoundTrip() throws {
        let names = ["", "belt1", "wb-north", "Förderband", "秤", "🚚", String(repeating: "d", count: 1000)]
        var readings: [Reading] = []
        for (i, dev) in names.enumerated() {
            for (j, ch) in names.enumerated() {
                readings.append(Self.reading(.int(Int64(i * 10 + j)), device: DeviceID(dev), channel: ChannelID(ch),
                                             time: Self.t0.adding(.nanoseconds(i * 10 + j))))
            }
        }
        try Self.roundTrip(readings)
    }

    @Test func timesRoundTripExactlyInAnyOrder() throws {
        let times: [Int64] = [0, -1, 1, .max, .min, .max - 1, .min + 1, 1_795_420_800_123_456_789, -1_795_420_800_000_000_001,
                              999_999_999, 1_795_420_800_123_456_788, 1_795_420_800_123_456_790, .min, .max, 0]
        let readings = times.enumerated().map { i, t in
            Self.reading(.int(Int64(i)), channel: ChannelID("c\(i % 3)"), time: UTCInstant(nanosecondsSinceEpoch: t))
        }
        try Self.roundTrip(readings)
        for t in times { try Self.roundTrip([Self.reading(.none, time: UTCInstant(nanosecondsSinceEpoch: t))]) }
    }

    @Test func rawWordsRoundTripAtEverySize() throws {
        var g = SplitMix64(seed: 7)
        var readings: [Reading] = []
        for n in [0, 1, 2, 3, 4, 5, 8, 17, 125, 4096] {
            for pattern in 0..<4 {
                let raw: [UInt16] = (0..<n).map { i in
                    switch pattern {
                    case 0: UInt16(truncatingIfNeeded: g.next())
                    case 1: UInt16(i & 0x7F)
                    case 2: [0, 0xFFFF, 0x7F, 0x80, 0x3FFF, 0x4000][i % 6]
                    default: 0
                    }
                }
                readings.append(Self.reading(.uint(UInt64(n)), time: Self.t0.adding(.milliseconds(readings.count)), raw: raw))
                readings.append(Self.reading(.string("s"), time: Self.t0.adding(.milliseconds(readings.count)), raw: raw))
                readings.append(Self.reading(.double(.nan), time: Self.t0.adding(.milliseconds(readings.count)), raw: raw))
            }
        }
        try Self.roundTrip(readings)
    }

    /// Every Modbus word order and width of the acquisition decoder derives raw words from the value at no cost (the
    /// byte-swapped orders at 1 byte); raw that doesn't match the value still round-trips, explicitly.
    @Test func rawWordsDerivedFromTheValueCostNothing() throws {
        func words(_ v: UInt64, width: Int, order: UInt8) -> [UInt16] {
            (0..<width).map { BatchCodec.derivedWord(v, width: width, order: order, index: $0) }
        }
        // Independent spelling of the orders, to pin derivedWord to the acquisition decoder's meaning.
        #expect(words(0x1122_3344, width: 2, order: 0) == [0x1122, 0x3344])  // ABCD
        #expect(words(0x1122_3344, width: 2, order: 1) == [0x3344, 0x1122])  // CDAB
        #expect(words(0x1122_3344, width: 2, order: 2) == [0x2211, 0x4433])  // BADC
        #expect(words(0x1122_3344, width: 2, order: 3) == [0x4433, 0x2211])  // DCBA
        #expect(words(0x1122_3344_5566_7788, width: 4, order: 1) == [0x7788, 0x5566, 0x3344, 0x1122])

        var g = SplitMix64(seed: 11)
        for _ in 0..<200 {
            let bits = g.next()
            let width = [1, 2, 4].randomElement(using: &g)!
            let order = UInt8.random(in: 0...3, using: &g)
            let mask: UInt64 = width == 4 ? .max : (1 << UInt64(16 * width)) - 1
            let m = Int64(bitPattern: bits) >> 24  // keep decimals well inside 2^50
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: bits))
            let cases: [(ReadingValue, UInt64)] = [
                (.uint(bits & mask), bits), (.int(Int64(bitPattern: bits)), bits), (.bool(bits & 1 == 1), bits & 1),
                (.double(Double(m) * 0.001), UInt64(bitPattern: m)), (.double(Double(m) / 100), UInt64(bitPattern: m)),
                (.double(Double(bitPattern: bits)), bits),
            ] + (f.isNaN ? [] : [(.double(Double(f)), UInt64(f.bitPattern))])
            for (i, (value, source)) in cases.enumerated() {
                let raw = words(source, width: width, order: order)
                let plain = Self.encode([Self.reading(value)])
                let withRaw = try Self.roundTrip([Self.reading(value, raw: raw)])
                let explicitCost = BatchCodec.explicitRawPlan(raw).cost
                // Never worse than writing the words; for doubles the encoder may pick another scale (or float) so
                // that the words follow from the value.
                #expect(withRaw.count <= plain.count + explicitCost, "\(value) raw \(raw)")
                if i < 3 {
                    // Integers and bools: the words cost nothing (1 byte for the byte-swapped orders).
                    #expect(withRaw.count <= plain.count + (order & 2 != 0 ? 1 : 0), "\(value) raw \(raw)")
                } else {
                    #expect(withRaw.count < plain.count + explicitCost, "\(value) raw \(raw)")
                }
            }
        }
        // BW500 rate: uint32 ABCD, 3 decimals, `scale = 0.001` — 1 byte id, 1 byte flags, 3 bytes decimal.
        let rate = Self.reading(.double(Double(30940) * 0.001), raw: [0, 30940])
        let header = Self.encode([Self.reading(.none)]).count - 2
        #expect(try Self.roundTrip([rate]).count - header == 5)
        // 1.2 m/s read as 1200 × 0.001: the decimal scale follows the raw words (k = 3, not k = 1).
        let speed = Self.reading(.double(Double(1200) * 0.001), raw: [0, 1200])
        #expect(try Self.roundTrip([speed]).count - header == 5)
        // A value that does not come from its raw words: explicit words (fixed 16-bit when that is shorter).
        let odd = Self.reading(.double(30.94), raw: [0xBEEF, 0xCAFE])
        #expect(try Self.roundTrip([odd]).count - header == 1 + 1 + 3 + 1 + 4)
    }

    @Test func encodingPicksTheCompactKinds() throws {
        let header = Self.encode([Self.reading(.none)]).count - 2  // id + flags
        func recordSize(_ v: ReadingValue) throws -> Int { try Self.roundTrip([Self.reading(v)]).count - header - 2 }
        #expect(try recordSize(.bool(true)) == 0)
        #expect(try recordSize(.int(-64)) == 1)
        #expect(try recordSize(.uint(127)) == 1)
        #expect(try recordSize(.double(30.94)) == 3)  // decimal 3094 / 10^2: zigzag 6188 << 5 | 2 → 3 bytes
        #expect(try recordSize(.double(0.5)) == 2)  // 5 / 10^1
        #expect(try recordSize(.double(Double(Float.pi))) == 4)
        #expect(try recordSize(.double(.pi)) == 8)
        #expect(try recordSize(.double(.nan)) == 8)
        #expect(try recordSize(.double(-0.0)) == 4)
        #expect(try recordSize(.string("abc")) == 4)
        // Within a batch: repeats cost nothing, small integer steps cost a byte.
        let r1 = Self.reading(.double(.pi))
        let r2 = Self.reading(.double(.pi))
        #expect(try Self.roundTrip([r1, r2]).count == header + 2 + 8 + 1 + 1 + 1)
        let u1 = Self.reading(.uint(1_234_567))
        let u2 = Self.reading(.uint(1_234_575))
        #expect(try Self.roundTrip([u1, u2]).count == header + 2 + 3 + 1 + 1 + 1 + 1)
        // Non-default status costs one byte.
        #expect(try Self.roundTrip([Self.reading(.none, quality: .commFailure)]).count == header + 2 + 1)
    }

    @Test func emptyBatchRoundTrips() throws {
        let out = try Self.roundTrip([], firstSequence: 42)
        #expect(out == [BatchCodec.formatVersion, 42, 0, 0])
    }

    // MARK: Format version

    @Test func firstByteIsTheFormatVersionAndOthersAreRefused() throws {
        let out = Self.encode([Self.reading(.int(5))])
        #expect(out.first == BatchCodec.formatVersion)
        #expect(BatchCodec.formatVersion == 1)
        var bad = out
        bad[0] = 2
        let e = try #require(Self.decodeError(bad))
        #expect(e.offset == 0)
        #expect(e.description.contains("unsupported batch format version 2"))
    }

    // MARK: Dictionary across batches

    @Test func dictionaryGrowsAcrossTheBatchesOfASegment() throws {
        func batch(_ devices: [(DeviceID, ChannelID, Unit?)], _ s: Int) -> [Reading] {
            devices.enumerated().map { i, d in
                Self.reading(.uint(UInt64(s * 10 + i)), device: d.0, channel: d.1, unit: d.2,
                             time: Self.t0.adding(.seconds(s)).adding(.milliseconds(i)))
            }
        }
        let belt: [(DeviceID, ChannelID, Unit?)] = [("belt1", "rate", .tonnePerHour), ("belt1", "total1", .kilogram)]
        let wb: [(DeviceID, ChannelID, Unit?)] = [("wb", "weight", .kilogram), ("wb", "status", nil)]
        let batches: [[Reading]] = [
            batch(belt, 0), batch(belt, 1), batch(belt + wb, 2), batch(wb.reversed() + belt, 3),
            batch([("belt1", "rate", .kilogramPerHour)] + belt, 4), batch([], 5), batch(belt, 6),
        ]
        var encoderDictionary = SeriesDictionary()
        var bodies: [[UInt8]] = []
        var snapshots: [SeriesDictionary] = []
        var seq: UInt64 = 1
        for b in batches {
            var out: [UInt8] = []
            BatchCodec.encode(firstSequence: seq, b, dictionary: &encoderDictionary, into: &out)
            seq += UInt64(b.count)
            bodies.append(out)
            snapshots.append(encoderDictionary)
        }
        // Dense ids in order of first use; a different unit is a different series.
        #expect(encoderDictionary.keys == [
            SeriesKey(device: "belt1", channel: "rate", unit: .tonnePerHour),
            SeriesKey(device: "belt1", channel: "total1", unit: .kilogram),
            SeriesKey(device: "wb", channel: "weight", unit: .kilogram), SeriesKey(device: "wb", channel: "status", unit: nil),
            SeriesKey(device: "belt1", channel: "rate", unit: .kilogramPerHour),
        ])
        #expect(encoderDictionary.id(for: SeriesKey(device: "wb", channel: "status", unit: nil)) == 3)
        #expect(encoderDictionary.key(for: 4) == SeriesKey(device: "belt1", channel: "rate", unit: .kilogramPerHour))
        #expect(encoderDictionary.key(for: 5) == nil)
        #expect(snapshots.map(\.count) == [2, 2, 4, 4, 5, 5, 5])
        // Only batches that introduce series carry definitions: batch 1 is smaller than batch 0.
        #expect(bodies[1].count < bodies[0].count)

        // Replaying in order with a fresh dictionary rebuilds it, batch by batch.
        var d = SeriesDictionary()
        var s = SeriesDictionary()
        seq = 1
        for (i, body) in bodies.enumerated() {
            let (first, readings) = try BatchCodec.decode(body[...], dictionary: &d)
            #expect(first == seq)
            Self.expectExact(readings, batches[i])
            let summary = try BatchCodec.summarize(body[...], dictionary: &s)
            #expect(summary == Self.expectedSummary(seq, batches[i]))
            #expect(d == snapshots[i])
            #expect(s == snapshots[i])
            seq += UInt64(batches[i].count)
        }
        // Random access with the whole segment's dictionary works (definitions already present are accepted).
        for (i, body) in bodies.enumerated() {
            var full = encoderDictionary
            Self.expectExact(try BatchCodec.decode(body[...], dictionary: &full).readings, batches[i])
            #expect(full == encoderDictionary)
        }
        // Out of order: a batch whose series were defined earlier, or which defines from a later id, is refused.
        let missing = try #require(Self.decodeError(bodies[1]))
        #expect(missing.reason.contains("not in the dictionary"))
        let ahead = try #require(Self.decodeError(bodies[2], dictionary: SeriesDictionary()))
        #expect(ahead.reason.contains("defines series from id 2"))
        // A foreign dictionary (same size, other keys) is refused where the definitions disagree.
        var foreign = SeriesDictionary()
        foreign.append(SeriesKey(device: "x", channel: "y", unit: nil))
        foreign.append(SeriesKey(device: "belt1", channel: "total1", unit: .kilogram))
        let conflict = try #require(Self.decodeError(bodies[0], dictionary: foreign))
        #expect(conflict.reason.contains("is defined as"))
        // A failed decode leaves the dictionary as it was (Self.outcome checks it too).
        var partial = snapshots[1]
        var truncated = bodies[2]
        truncated.removeLast()
        #expect(throws: BatchDecodeError.self) { try BatchCodec.decode(truncated[...], dictionary: &partial) }
        #expect(partial == snapshots[1])
    }

    // MARK: Random round trips

    struct Generator {
        var g: SplitMix64
        var hugeRaw = true
        let devices: [DeviceID] = ["belt1", "belt2", "wb-north", "温度计", ""]
        let channels: [ChannelID] = ["rate", "total1", "speed", "running", "weight", "status", "🚚"]

        mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &g) }
        mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &g) < p }

        mutating func string() -> String {
            let n = int(0...12)
            var s = ""
            for _ in 0..<n {
                let ranges: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x7FF, 0x800...0xD7FF, 0xE000...0xFFFF, 0x10000...0x10FFFF]
                let r = ranges[int(0...4)]
                s.unicodeScalars.append(Unicode.Scalar(UInt32.random(in: r, using: &g))!)
            }
            return s
        }

        mutating func double(previous: Double?) -> Double {
            switch int(0...9) {
            case 0: return Double(bitPattern: g.next())
            case 1: return BatchCodecTests.doubleEdges.randomElement(using: &g)!
            case 2: return Double(Int64.random(in: -1_000_000...1_000_000, using: &g)) * BatchCodec.negativePowerOfTen(int(0...6))
            case 3: return Double(Int64.random(in: -1_000_000...1_000_000, using: &g)) / BatchCodec.powerOfTen(int(0...6))
            case 4: return Double(Float(bitPattern: UInt32(truncatingIfNeeded: g.next())))
            case 5, 6: return previous ?? 0.5
            default: return Double.random(in: -100...100, using: &g)
            }
        }

        mutating func value(previous: ReadingValue?) -> ReadingValue {
            switch int(0...9) {
            case 0: return .none
            case 1: return .bool(chance(0.5))
            case 2:
                if case .int(let p)? = previous, chance(0.5) { return .int(p &+ Int64(int(-300...300))) }
                return .int(chance(0.3) ? Int64(bitPattern: g.next()) : BatchCodecTests.intEdges.randomElement(using: &g)!)
            case 3:
                if case .uint(let p)? = previous, chance(0.5) { return .uint(p &+ UInt64(int(0...20))) }
                return .uint(chance(0.5) ? g.next() >> UInt64(int(0...63)) : BatchCodecTests.uintEdges.randomElement(using: &g)!)
            case 4: return .string(string())
            default:
                if case .double(let p)? = previous { return .double(double(previous: p)) }
                return .double(double(previous: nil))
            }
        }

        mutating func raw(for value: ReadingValue) -> [UInt16] {
            switch int(0...5) {
            case 0, 1: return []
            case 2: return (0..<int(1...6)).map { _ in UInt16(truncatingIfNeeded: g.next() >> UInt64(int(0...60))) }
            case 3 where hugeRaw && chance(0.05): return (0..<int(0...4096)).map { _ in UInt16(truncatingIfNeeded: g.next()) }
            default:
                // Derivable from the value's integer form, when it has one.
                let source: UInt64
                switch value {
                case .int(let v): source = UInt64(bitPattern: v)
                case .uint(let v): source = v
                case .bool(let b): source = b ? 1 : 0
                case .double(let x): source = x.bitPattern
                default: source = g.next()
                }
                let width = [1, 2, 4].randomElement(using: &g)!
                let order = UInt8(int(0...3))
                return (0..<width).map { BatchCodec.derivedWord(source, width: width, order: order, index: $0) }
            }
        }

        mutating func batch(start: Int64) -> [Reading] {
            let n = chance(0.05) ? 0 : int(1...40)
            var t = start
            var last: [String: ReadingValue] = [:]
            var out: [Reading] = []
            out.reserveCapacity(n)
            for _ in 0..<n {
                switch int(0...9) {
                case 0: t = Int64(bitPattern: g.next())
                case 1: t &-= Int64(int(0...5_000_000))
                default: t &+= Int64(int(0...3_000_000))
                }
                let device = devices[int(0...devices.count - 1)]
                let channel = channels[int(0...channels.count - 1)]
                let unit: Unit? = chance(0.3) ? nil : Unit.allCases.randomElement(using: &g)
                let key = "\(device)/\(channel)"
                let value = value(previous: last[key])
                last[key] = value
                out.append(Reading(
                    device: device, channel: channel, time: UTCInstant(nanosecondsSinceEpoch: t), value: value, unit: unit,
                    quality: chance(0.8) ? .good : Quality.allCases.randomElement(using: &g)!,
                    clockSynchronized: chance(0.9), raw: raw(for: value)))
            }
            return out
        }
    }

    @Test func randomBatchesRoundTripExactly() throws {
        var gen = Generator(g: SplitMix64(seed: 0x4B49_4C4E))
        var segments: [(bodies: [[UInt8]], batches: [[Reading]], sequences: [UInt64], dictionary: SeriesDictionary)] = []
        var total = 0
        var bytes = 0
        for _ in 0..<100 {
            var dictionary = SeriesDictionary()
            var bodies: [[UInt8]] = []
            var batches: [[Reading]] = []
            var sequences: [UInt64] = []
            var seq = UInt64.random(in: 0...(1 << 40), using: &gen.g)
            for _ in 0..<20 {
                let b = gen.batch(start: Self.t0.nanosecondsSinceEpoch + Int64(gen.int(0...1_000_000_000_000)))
                var out: [UInt8] = []
                BatchCodec.encode(firstSequence: seq, b, dictionary: &dictionary, into: &out)
                bodies.append(out)
                batches.append(b)
                sequences.append(seq)
                seq &+= UInt64(b.count)
                total += b.count
                bytes += out.count
            }
            segments.append((bodies, batches, sequences, dictionary))
        }
        #expect(segments.count * 20 == 2000)
        for segment in segments {
            var d = SeriesDictionary()
            var s = SeriesDictionary()
            for (i, body) in segment.bodies.enumerated() {
                let (first, readings) = try BatchCodec.decode(body[...], dictionary: &d)
                #expect(first == segment.sequences[i])
                Self.expectExact(readings, segment.batches[i])
                let summary = try BatchCodec.summarize(body[...], dictionary: &s)
                #expect(summary == Self.expectedSummary(segment.sequences[i], segment.batches[i]))
            }
            #expect(d == segment.dictionary)
            #expect(s == segment.dictionary)
        }
        print("random batches: \(total) readings, \(bytes) bytes")
    }

    // MARK: Malformed input

    /// A few batches that between them use every field, kind and raw code.
    static func sampleBodies() -> [(body: [UInt8], dictionary: SeriesDictionary)] {
        var gen = Generator(g: SplitMix64(seed: 99), hugeRaw: false)
        var out: [([UInt8], SeriesDictionary)] = []
        var everything: [Reading] = []
        let values: [ReadingValue] = [.none, .bool(true), .bool(false), .int(-5), .int(-3), .uint(9), .uint(12),
                                      .double(.pi), .double(.pi), .double(0.5), .double(30.94), .double(Double(Float.pi)),
                                      .string("é😀"), .uint(0x1234_5678)]
        for (i, v) in values.enumerated() {
            everything.append(Self.reading(
                v, channel: i % 2 == 0 ? "a" : "b", unit: i % 3 == 0 ? nil : .kilogram,
                time: Self.t0.adding(.milliseconds(i * (i % 2 == 0 ? 1 : -1))), quality: i % 4 == 0 ? .manual : .good,
                synced: i % 5 != 0, raw: i % 3 == 0 ? [] : gen.raw(for: v)))
        }
        everything.append(Self.reading(.uint(0x1234_5678), raw: [0x3412, 0x7856]))  // extended derivation
        everything.append(Self.reading(.uint(1), raw: [0xFFFF, 0x8000, 0]))  // explicit fixed
        everything.append(Self.reading(.uint(1), raw: [1, 2, 300]))  // explicit varint
        var d = SeriesDictionary()
        var body: [UInt8] = []
        BatchCodec.encode(firstSequence: 1000, everything, dictionary: &d, into: &body)
        out.append((body, SeriesDictionary()))
        // A second batch of the same segment: decoded with the dictionary the first built.
        let before = d
        var body2: [UInt8] = []
        BatchCodec.encode(firstSequence: 2000, Array(everything.prefix(6)) + [Self.reading(.int(1), channel: "new")],
                          dictionary: &d, into: &body2)
        out.append((body2, before))
        for _ in 0..<6 {
            var d3 = SeriesDictionary()
            var b3: [UInt8] = []
            BatchCodec.encode(firstSequence: gen.g.next(), gen.batch(start: Self.t0.nanosecondsSinceEpoch), dictionary: &d3, into: &b3)
            out.append((b3, SeriesDictionary()))
        }
        return out
    }

    @Test func everyTruncationThrowsAndTheFullBodyDecodes() throws {
        for (body, dictionary) in Self.sampleBodies() {
            #expect(Self.outcome(body[...], dictionary: dictionary) != nil)
            for n in 0..<body.count {
                #expect(Self.outcome(body[..<n], dictionary: dictionary) == nil, "prefix \(n) of \(body.count) decoded")
                // Also in a slice that does not start at index 0, as the segment layer hands them.
                let padded: [UInt8] = [0xAA, 0xBB] + body
                #expect(Self.outcome(padded[2..<(2 + n)], dictionary: dictionary) == nil, "prefix \(n) at offset 2 decoded")
            }
            let padded: [UInt8] = [0xAA, 0xBB] + body + [0xCC]
            #expect(Self.outcome(padded[2..<(2 + body.count)], dictionary: dictionary) != nil)
            // One extra byte is trailing garbage.
            let e = try #require(Self.decodeError(body + [0], dictionary: dictionary))
            #expect(e.offset == body.count)
            #expect(e.reason.contains("trailing"))
        }
    }

    @Test func flippedBytesThrowOrDecodeButNeverTrap() {
        var decoded = 0
        var refused = 0
        for (body, dictionary) in Self.sampleBodies() {
            for i in body.indices {
                for mask: UInt8 in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF, 0x7F] {
                    var b = body
                    b[i] ^= mask
                    if Self.outcome(b[...], dictionary: dictionary) == nil { refused += 1 } else { decoded += 1 }
                }
            }
        }
        // Random garbage after a valid version byte.
        var g = SplitMix64(seed: 3)
        for _ in 0..<5_000 {
            let n = Int.random(in: 0...64, using: &g)
            let b = [BatchCodec.formatVersion] + (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            if Self.outcome(b[...]) == nil { refused += 1 } else { decoded += 1 }
        }
        print("corrupted bodies: \(refused) refused, \(decoded) decoded to something")
        #expect(refused > 0 && decoded > 0)
    }

    /// Builds a body by hand: header, definitions and the given record bytes.
    static func handMade(count: UInt64, definitions: [(String, String, String)] = [("d", "c", "")], firstNew: UInt64 = 0,
                         records: [UInt8]) -> (body: [UInt8], recordsAt: Int) {
        var b: [UInt8] = [BatchCodec.formatVersion]
        b.appendVarint(7)
        b.appendVarint(count)
        if count > 0 { b.appendLE(UInt64(bitPattern: Self.t0.nanosecondsSinceEpoch)) }
        b.appendVarint(UInt64(definitions.count))
        if !definitions.isEmpty {
            b.appendVarint(firstNew)
            for (dev, ch, unit) in definitions { b.appendString(dev); b.appendString(ch); b.appendString(unit) }
        }
        return (b + records, b.count)
    }

    @Test func everyClassOfMalformedInputIsRefusedWithItsOffset() throws {
        func refused(_ made: (body: [UInt8], recordsAt: Int), dictionary: SeriesDictionary = .init(),
                     at offset: (Int) -> Int, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let e = try #require(Self.decodeError(made.body, dictionary: dictionary), sourceLocation: sourceLocation)
            #expect(e.offset == offset(made.recordsAt), "\(e)", sourceLocation: sourceLocation)
            #expect(e.reason.contains(reason), "\(e)", sourceLocation: sourceLocation)
        }
        // The well-formed baseline decodes: one uint 5 record with explicit raw [1].
        let ok = Self.handMade(count: 1, records: [0, BatchCodec.Kind.uint | 1 << 5, 5, 2, 1])
        var d = SeriesDictionary()
        #expect(try BatchCodec.decode(ok.body[...], dictionary: &d).readings.first?.raw == [1])

        // Structure
        try refused(([], 0), at: { _ in 0 }, "truncated format version")
        try refused(([9], 0), at: { _ in 0 }, "unsupported batch format version 9")
        try refused(([1] + Array(repeating: 0xFF, count: 10) + [0x01], 0), at: { _ in 1 }, "varint overflows")
        try refused(([1, 0x80, 0x80], 0), at: { _ in 1 }, "truncated first sequence")
        try refused(([1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F] + Array(repeating: 0, count: 20), 0), at: { _ in 2 }, "record count")
        try refused(([1, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F], 0), at: { _ in 3 }, "new series count")
        try refused(Self.handMade(count: 2, records: [0, BatchCodec.Kind.none]), at: { $0 + 2 }, "truncated series id")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.none, 0]), at: { $0 + 2 }, "trailing")
        // Dictionary
        try refused(Self.handMade(count: 1, records: [1, 0]), at: { $0 }, "series id 1 is not in the dictionary")
        try refused(Self.handMade(count: 1, firstNew: 1, records: [0, 0]), at: { _ in 12 }, "defines series from id 1")
        try refused(Self.handMade(count: 1, definitions: [("d", "c", ""), ("d", "c", "")], records: [0, 0]),
                    at: { _ in 18 }, "defined again")
        try refused(Self.handMade(count: 1, definitions: [("d", "c", "furlong")], records: [0, 0]),
                    at: { _ in 17 }, "unknown unit \"furlong\"")
        var overlong = Self.handMade(count: 1, definitions: [("d\u{FF}", "c", "")], records: [0, 0])
        #expect(overlong.body[15...16] == [0xC3, 0xBF])
        overlong.body[15] = 0xC0  // "ÿ" becomes an overlong encoding of NUL
        overlong.body[16] = 0x80
        try refused(overlong, at: { _ in 13 }, "not valid UTF-8")
        // Records
        try refused(Self.handMade(count: 1, records: [0, 12]), at: { $0 + 1 }, "unknown value kind 12")
        try refused(Self.handMade(count: 1, records: [0, 15]), at: { $0 + 1 }, "unknown value kind 15")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.statusFollows, 0x10]), at: { $0 + 2 }, "bad record status")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.statusFollows, 7]), at: { $0 + 2 }, "bad record status")
        // An exception code (high nibble) belongs to a device fault (3) only.
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.statusFollows, 0x25]), at: { $0 + 2 }, "bad record status")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.intDelta, 2]), at: { $0 + 1 }, "integer delta without")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.doubleRepeat]), at: { $0 + 1 }, "repeat without")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.float64, 1, 2, 3]), at: { $0 + 2 }, "truncated double")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.float32, 1, 2, 3]), at: { $0 + 2 }, "truncated float")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.string, 5, 0x61]), at: { $0 + 2 }, "truncated string")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.string, 2, 0xED, 0xA0]), at: { $0 + 2 }, "not valid UTF-8")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.string, 3, 0xED, 0xA0, 0x80]), at: { $0 + 2 }, "not valid UTF-8")
        // Raw
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.string | 2 << 5, 0]), at: { $0 + 1 }, "no integer form")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.none | 3 << 5]), at: { $0 + 1 }, "no integer form")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.boolTrue | 7 << 5, 3]), at: { $0 + 2 }, "bad raw derivation")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.boolTrue | 7 << 5, 0x10]), at: { $0 + 2 }, "bad raw derivation")
        try refused(Self.handMade(count: 1, records: [0, BatchCodec.Kind.boolTrue | 7 << 5]), at: { $0 + 2 }, "truncated raw derivation")
        try refused(Self.handMade(count: 1, records: [0, 1 << 5, 0xFF, 0xFF, 0x7F]), at: { $0 + 2 }, "raw word count")
        try refused(Self.handMade(count: 1, records: [0, 1 << 5, 5, 1, 2]), at: { $0 + 2 }, "raw word count 2 cannot fit")
        try refused(Self.handMade(count: 1, records: [0, 1 << 5, 2, 0x80, 0x80, 0x04]), at: { $0 + 3 }, "exceeds 16 bits")
        try refused(Self.handMade(count: 1, records: [0, 1 << 5, 2, 0x80]), at: { $0 + 3 }, "truncated raw word")
    }

    @Test func hugeCountsAreRefusedWithoutAllocating() throws {
        // Counts near 2^63 must be refused by the remaining-bytes bound, not by running out of memory.
        var b: [UInt8] = [BatchCodec.formatVersion, 0]
        b.appendVarint(UInt64.max >> 1)
        b += Array(repeating: 0, count: 32)
        #expect(Self.decodeError(b)?.reason.contains("cannot fit") == true)
        var raw = Self.handMade(count: 1, records: [0, 1 << 5]).body
        raw.appendVarint(UInt64.max)
        #expect(Self.decodeError(raw)?.reason.contains("cannot fit") == true)
    }

    // MARK: Size on a realistic mix

    /// 10 minutes of a plant polled at 1/s: a BW500-like belt scale (rate t/h and speed m/s as uint32 × 0.001, the
    /// kg totalizer as uint32 word-swapped, running as a coil) and a weighbridge (weight int32 kg, status uint16).
    /// One batch per second holds one poll of each device; each reading keeps its 1–2 raw registers.
    static func plant(seconds: Int, seed: UInt64) -> [[Reading]] {
        var g = SplitMix64(seed: seed)
        var total: UInt32 = 1_234_567
        var weight: Int32 = 0
        var truckPhase = 0
        var batches: [[Reading]] = []
        func hiLo(_ v: UInt32) -> [UInt16] { [UInt16(v >> 16), UInt16(v & 0xFFFF)] }
        for s in 0..<seconds {
            var batch: [Reading] = []
            // Belt scale on a Modbus TCP bus: each channel read takes 0.6–2.5 ms.
            var t = t0.nanosecondsSinceEpoch + Int64(s) * 1_000_000_000 + Int64.random(in: 0...20_000_000, using: &g)
            func next() -> UTCInstant {
                t += Int64.random(in: 600_000...2_500_000, using: &g)
                return UTCInstant(nanosecondsSinceEpoch: t)
            }
            let rateMilli = UInt32(30_000 + 6_000 * sin(2 * Double.pi * Double(s) / 60) + Double.random(in: -50...50, using: &g))
            let speedMilli = UInt32(1_200 + Int.random(in: -3...3, using: &g))
            total += UInt32.random(in: 7...9, using: &g)
            batch.append(Reading(device: "belt1", channel: "rate", time: next(), value: .double(Double(rateMilli) * 0.001),
                                 unit: .tonnePerHour, raw: hiLo(rateMilli)))
            batch.append(Reading(device: "belt1", channel: "total_kg", time: next(), value: .uint(UInt64(total)),
                                 unit: .kilogram, raw: Array(hiLo(total).reversed())))
            batch.append(Reading(device: "belt1", channel: "speed", time: next(), value: .double(Double(speedMilli) * 0.001),
                                 unit: .metrePerSecond, raw: hiLo(speedMilli)))
            batch.append(Reading(device: "belt1", channel: "running", time: next(), value: .bool(true), unit: nil, raw: [1]))
            // Weighbridge on an RTU bus polled concurrently: its readings interleave in time with the belt's.
            t = t0.nanosecondsSinceEpoch + Int64(s) * 1_000_000_000 + Int64.random(in: 0...20_000_000, using: &g)
            truckPhase = (truckPhase + 1) % 90
            switch truckPhase {
            case 0..<40: weight = Int32.random(in: -2...2, using: &g) == 0 ? 0 : weight  // empty, settles to 0
            case 40: weight = 14_820  // truck drives on
            case 41..<60: weight += Int32.random(in: 0...1, using: &g) == 0 ? 0 : 20 * Int32.random(in: 50...150, using: &g)
            default: break  // loaded, steady
            }
            let status: UInt16 = (41..<60).contains(truckPhase) ? 0x0003 : 0x0001
            if s % 300 == 299 {  // a missed poll now and then
                batch.append(Reading(device: "wb", channel: "weight", time: next(), value: .none, unit: .kilogram, quality: .commFailure))
                batch.append(Reading(device: "wb", channel: "status", time: next(), value: .none, unit: nil, quality: .commFailure))
            } else {
                batch.append(Reading(device: "wb", channel: "weight", time: next(), value: .int(Int64(weight)), unit: .kilogram,
                                     raw: hiLo(UInt32(bitPattern: weight))))
                batch.append(Reading(device: "wb", channel: "status", time: next(), value: .uint(UInt64(status)), unit: nil,
                                     raw: [status]))
            }
            batches.append(batch)
        }
        return batches
    }

    /// Encodes a segment of batches; returns (bytes on disk including 8 bytes of frame per batch, readings).
    static func segmentSize(_ batches: [[Reading]], firstSequence: UInt64) throws -> (bytes: Int, readings: Int) {
        var d = SeriesDictionary()
        var check = SeriesDictionary()
        var bytes = 0
        var readings = 0
        var seq = firstSequence
        var out: [UInt8] = []
        for b in batches {
            out.removeAll(keepingCapacity: true)
            BatchCodec.encode(firstSequence: seq, b, dictionary: &d, into: &out)
            Self.expectExact(try BatchCodec.decode(out[...], dictionary: &check).readings, b)
            bytes += out.count + 8
            readings += b.count
            seq += UInt64(b.count)
        }
        return (bytes, readings)
    }

    @Test func realisticMixTakesAtMost16BytesPerReading() throws {
        let batches = Self.plant(seconds: 600, seed: 2026)
        // A long-running store: sequence numbers in the hundreds of millions (4-byte varints).
        let withRaw = try Self.segmentSize(batches, firstSequence: 200_000_000)
        let withoutRaw = try Self.segmentSize(batches.map { $0.map { var r = $0; r.raw = []; return r } }, firstSequence: 200_000_000)
        // Raw words that do not follow from the value (e.g. an offset in the scaling): written explicitly.
        let opaqueRaw = try Self.segmentSize(batches.map { $0.map { var r = $0; r.raw = r.raw.map { $0 ^ 0x5A5A }; return r } },
                                             firstSequence: 200_000_000)
        func perReading(_ s: (bytes: Int, readings: Int)) -> Double { Double(s.bytes) / Double(s.readings) }
        func fmt(_ x: Double) -> String {
            let c = Int((x * 100).rounded())
            return "\(c / 100)." + (c % 100 < 10 ? "0" : "") + "\(c % 100)"
        }
        print("realistic mix, \(withRaw.readings) readings in \(batches.count) batches (incl. 8 B frame per batch): "
              + "\(fmt(perReading(withRaw))) B/reading with raw (derived), \(fmt(perReading(withoutRaw))) without raw, "
              + "\(fmt(perReading(opaqueRaw))) with raw not derivable from the value")
        #expect(perReading(withRaw) <= 16)
        #expect(perReading(withoutRaw) <= perReading(withRaw))
    }
}
