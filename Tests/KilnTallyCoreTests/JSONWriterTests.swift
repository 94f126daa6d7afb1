import KilnTallyCore
import Testing

/// The fast JSON writer (payloads on every readings batch) against the simple one it replaced, byte for byte.
@Suite("JSON writer")
struct JSONWriterTests {
    static let pieces = ["belt1", "rate", "", "\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1F}", "\u{7F}", "生活垃圾", "é", "🚛",
                         "a b", "/", "kg/h", "\u{0}"]

    func string(_ rng: inout SplitMix64) -> String {
        (0..<Int.random(in: 0...4, using: &rng)).map { _ in Self.pieces.randomElement(using: &rng)! }.joined()
    }

    func double(_ rng: inout SplitMix64) -> Double {
        switch Int.random(in: 0..<8, using: &rng) {
        case 0: return Double(bitPattern: rng.next())  // anything, NaN and infinities included
        case 1: return [0.0, -0.0, 1e15, -1e15, 999_999_999_999_999, 1e15 - 0.5, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
            .randomElement(using: &rng)!
        case 2: return Double(Int64.random(in: -1_000_000...1_000_000, using: &rng))
        default: return Double.random(in: -1e6...1e6, using: &rng)
        }
    }

    func instant(_ rng: inout SplitMix64) -> UTCInstant {
        // Int64 nanoseconds reach from 1677 to 2262.
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: return UTCInstant(nanosecondsSinceEpoch: [Int64.min, Int64.max, 0, -1].randomElement(using: &rng)!)
        case 1: return UTCInstant(nanosecondsSinceEpoch: Int64.random(in: -1_000_000_000_000...1_000_000_000_000, using: &rng))  // around 1970
        default: return UTCInstant(nanosecondsSinceEpoch: Int64(bitPattern: rng.next()))
        }
    }

    func reading(_ rng: inout SplitMix64) -> Reading {
        let value: ReadingValue
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: value = .int([Int64.min, Int64.max, 0, -1, Int64.random(in: .min ... .max, using: &rng)].randomElement(using: &rng)!)
        case 1: value = .uint([UInt64.max, 0, 9, 10, rng.next()].randomElement(using: &rng)!)
        case 2: value = .double(double(&rng))
        case 3: value = .bool(Bool.random(using: &rng))
        case 4: value = .string(string(&rng))
        default: value = ReadingValue.none
        }
        let quality = Quality.allCases.randomElement(using: &rng)!
        return Reading(device: DeviceID(string(&rng)), channel: ChannelID(string(&rng)), time: instant(&rng), value: value,
                       unit: Bool.random(using: &rng) ? Unit.allCases.randomElement(using: &rng) : nil, quality: quality,
                       clockSynchronized: Bool.random(using: &rng),
                       raw: (0..<Int.random(in: 0...6, using: &rng)).map { _ in UInt16.random(in: .min ... .max, using: &rng) },
                       exceptionCode: UInt8.random(in: 0...15, using: &rng))
    }

    @Test("readings batches: byte for byte what the simple writer wrote, over 20,000 random readings")
    func readingsMatchTheReference() {
        var rng = SplitMix64(seed: 212)
        for batch in 0..<1_000 {
            var fast = JSONWriter(), simple = ReferenceJSONWriter()
            fast.beginObject()
            simple.beginObject()
            fast.field("first_seq", UInt64(batch))
            simple.field("first_seq", UInt64(batch))
            fast.key("readings")
            simple.key("readings")
            fast.beginArray()
            simple.beginArray()
            for seq in 0..<20 {
                let r = reading(&rng)
                fast.beginObject()
                simple.beginObject()
                fast.field("seq", UInt64(seq))
                simple.field("seq", UInt64(seq))
                fast.readingFields(r)
                simple.readingFields(r)
                fast.endObject()
                simple.endObject()
            }
            fast.endArray()
            simple.endArray()
            fast.endObject()
            simple.endObject()
            if fast.bytes != simple.bytes {
                Issue.record("batch \(batch) differs:\nfast   \(fast.string)\nsimple \(simple.string)")
                return
            }
        }
    }

    @Test("any nesting of objects, arrays, keys and values: the same bytes as the simple writer")
    func structureMatchesTheReference() {
        var rng = SplitMix64(seed: 7)
        for round in 0..<2_000 {
            var fast = JSONWriter(), simple = ReferenceJSONWriter()
            var stack: [Bool] = []  // true: inside an object
            var expectingValue = false
            for _ in 0..<Int.random(in: 1...40, using: &rng) {
                let inObject = stack.last ?? false
                if inObject && !expectingValue {
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0 where !stack.isEmpty:
                        fast.endObject(); simple.endObject(); stack.removeLast()
                    default:
                        let k = string(&rng)
                        fast.key(k); simple.key(k); expectingValue = true
                    }
                    continue
                }
                expectingValue = false
                switch Int.random(in: 0..<9, using: &rng) {
                case 0 where stack.count < 60:
                    fast.beginObject(); simple.beginObject(); stack.append(true)
                case 1 where stack.count < 60:
                    fast.beginArray(); simple.beginArray(); stack.append(false)
                case 2 where !stack.isEmpty && !inObject:
                    fast.endArray(); simple.endArray(); stack.removeLast()
                case 3:
                    let v = Int64(bitPattern: rng.next()); fast.value(v); simple.value(v)
                case 4:
                    let v = double(&rng); fast.value(v); simple.value(v)
                case 5:
                    let t = instant(&rng); fast.value(t); simple.value(t.rfc3339)
                case 6:
                    fast.null(); simple.null()
                case 7:
                    let b = Bool.random(using: &rng); fast.value(b); simple.value(b)
                default:
                    let s = string(&rng); fast.value(s); simple.value(s)
                }
            }
            if fast.bytes != simple.bytes {
                Issue.record("round \(round) differs:\nfast   \(fast.string)\nsimple \(simple.string)")
                return
            }
        }
    }
}
