import Acquisition
import KilnTallyCore
import Testing

@Suite("Register decoding")
struct DecodingTests {
    // 0x12345678 sent in each 32-bit order, as the two registers on the wire.
    @Test("uint32 in every word order", arguments: [
        (WordOrder.abcd, [UInt16(0x1234), 0x5678]),
        (.cdab, [0x5678, 0x1234]),
        (.badc, [0x3412, 0x7856]),
        (.dcba, [0x7856, 0x3412]),
    ])
    func uint32(order: WordOrder, regs: [UInt16]) {
        #expect(RegisterDecoder.decode(regs[...], as: .uint32, order: order) == .uint(0x1234_5678))
    }

    @Test("float32 123.456 in every word order", arguments: WordOrder.allCases)
    func float32(order: WordOrder) {
        let bits = Float(123.456).bitPattern
        var words = [UInt16(bits >> 16), UInt16(bits & 0xFFFF)]
        if order == .cdab || order == .dcba { words.reverse() }
        if order == .badc || order == .dcba { words = words.map(\.byteSwapped) }
        #expect(RegisterDecoder.decode(words[...], as: .float32, order: order) == .double(Double(Float(123.456))))
    }

    @Test("64-bit values: ABCD is high word first, CDAB low word first", arguments: [
        (WordOrder.abcd, [UInt16(0x0102), 0x0304, 0x0506, 0x0708]),
        (.cdab, [0x0708, 0x0506, 0x0304, 0x0102]),
        (.badc, [0x0201, 0x0403, 0x0605, 0x0807]),
        (.dcba, [0x0807, 0x0605, 0x0403, 0x0201]),
    ])
    func uint64(order: WordOrder, regs: [UInt16]) {
        #expect(RegisterDecoder.decode(regs[...], as: .uint64, order: order) == .uint(0x0102_0304_0506_0708))
    }

    @Test func signedValues() {
        #expect(RegisterDecoder.decode([0xFFFF][...], as: .int16, order: .abcd) == .int(-1))
        #expect(RegisterDecoder.decode([0xFFFF, 0xFFFE][...], as: .int32, order: .abcd) == .int(-2))
        #expect(RegisterDecoder.decode([0xFFFE, 0xFFFF][...], as: .int32, order: .cdab) == .int(-2))
        #expect(RegisterDecoder.decode([0x8000][...], as: .int16, order: .abcd) == .int(-32768))
    }

    @Test func float64() {
        let bits = (1234567.891).bitPattern
        let regs = (0..<4).map { UInt16(truncatingIfNeeded: bits >> (48 - 16 * UInt64($0))) }
        #expect(RegisterDecoder.decode(regs[...], as: .float64, order: .abcd) == .double(1234567.891))
    }

    @Test("scaling keeps integers exact when it is the identity")
    func scaling() {
        #expect(RegisterDecoder.scaled(.uint(7345), scale: 1, offset: 0) == .uint(7345))
        #expect(RegisterDecoder.scaled(.uint(7345), scale: 0.001, offset: 0) == .double(7345 * 0.001))
        #expect(RegisterDecoder.scaled(.int(-10), scale: 2, offset: 1) == .int(-19))
        #expect(RegisterDecoder.scaled(.uint(7345), scale: 10, offset: 0) == .uint(73450))
        #expect(RegisterDecoder.scaled(.uint(5), scale: 1, offset: -10) == .int(-5))
        #expect(RegisterDecoder.scaled(.uint(UInt64.max), scale: 2, offset: 0) == .double(Double(UInt64.max) * 2))
        #expect(RegisterDecoder.scaled(.bool(true), scale: 2, offset: 1) == .bool(true))
    }

    @Test("BW500 sentinels are recognised before scaling, in every integer form", arguments: [
        (ReadingValue.uint(22222), true), (.uint(30003), true), (.int(-32768), true), (.int(32767), true),
        (.uint(7345), false), (.int(-1), false), (.double(22222), true), (.double(22222.5), false), (.bool(true), false),
    ])
    func sentinels(value: ReadingValue, expected: Bool) {
        let bw500: Set<Int64> = [22222, 30000, 30001, 30003, 30004, -32768, 32767]
        #expect(RegisterDecoder.isSentinel(value, bw500) == expected)
        #expect(!RegisterDecoder.isSentinel(value, []))
    }

    func ch(_ type: ValueType, order: WordOrder = .abcd, bit: Int? = nil, wordBits: Int = 16, length: Int? = nil) -> ChannelConfig {
        ChannelConfig(id: "c", table: .holding, address: 0, type: type, wordOrder: order, scale: 1, offset: 0, unit: nil,
                      bit: bit, wordBits: wordBits, length: length)
    }

    @Test("bit of a status word: Flintec FT-112 status is 32-bit, B2 = unstable, B27 = a decimal-point bit", arguments: [
        // (registers, order, bit, expected)
        ([UInt16(0x0004)], WordOrder.abcd, 2, true), ([0x0004], .abcd, 3, false), ([0x8000], .abcd, 15, true),
        ([0x0000, 0x0004], .abcd, 2, true), ([0x0800, 0x0000], .abcd, 27, true), ([0x0000, 0x0800], .cdab, 27, true),
        ([0x0800, 0x0000], .cdab, 27, false), ([0x0400], .badc, 2, true),
    ])
    func bits(regs: [UInt16], order: WordOrder, bit: Int, expected: Bool) {
        let c = ch(.bit, order: order, bit: bit, wordBits: regs.count * 16)
        #expect(c.registerCount == regs.count)
        #expect(RegisterDecoder.decode(regs[...], channel: c) == .bool(expected))
    }

    @Test("strings: two characters per register, padding trimmed, byte-swapped orders", arguments: [
        ([UInt16(0x4142), 0x2D31, 0x3233, 0x0000], WordOrder.abcd, "AB-123"),
        ([0x4142, 0x2D31, 0x3233, 0x2020], .abcd, "AB-123"),
        ([0x4241, 0x312D, 0x3332, 0x0000], .badc, "AB-123"),
        ([0x0000, 0x4142], .abcd, ""),
    ])
    func strings(regs: [UInt16], order: WordOrder, expected: String) {
        let c = ch(.string, order: order, length: regs.count)
        #expect(c.registerCount == regs.count)
        #expect(RegisterDecoder.decode(regs[...], channel: c) == .string(expected))
    }

    @Test("a float that is not a number is a decode error: quality invalid, no value, raw registers kept", arguments: [
        // IEEE 754 single: quiet NaN 0x7FC00000, +infinity 0x7F800000, -infinity 0xFF800000; double quiet NaN.
        ([UInt16(0x7FC0), 0x0000], ValueType.float32), ([0x7F80, 0x0000], .float32), ([0xFF80, 0x0000], .float32),
        ([0x7FF8, 0x0000, 0x0000, 0x0000], .float64),
    ])
    func notANumber(regs: [UInt16], type: ValueType) {
        let r = RegisterDecoder.reading(device: "d", channel: ch(type), words: regs, requestAddress: 0,
                                        time: UTCInstant(nanosecondsSinceEpoch: 0), clockSynchronized: true)
        #expect(r.quality == .invalid && r.value == ReadingValue.none && r.raw == regs)
        // 1.5 (0x3FC00000) is an ordinary value.
        let ok = RegisterDecoder.reading(device: "d", channel: ch(.float32), words: [0x3FC0, 0], requestAddress: 0,
                                         time: UTCInstant(nanosecondsSinceEpoch: 0), clockSynchronized: true)
        #expect(ok.quality == .good && ok.value == .double(1.5))
    }
}
