import KilnTallyCore
import SerialScale
import Testing

/// Frames built by hand from the manuals' tables (DOMAIN.md §1.3), byte by byte: the parser must read them as the
/// manual says, independently of the encoder.
@Suite("Golden frames")
struct GoldenFrameTests {
    static func parse(_ p: ScaleProtocol, checksum: Bool = false, _ bytes: [UInt8]) -> ([ScaleFrame], ScaleParserCounters) {
        var parser = ScaleStreamParser(protocol: p, checksum: checksum)
        let frames = parser.feed(bytes)
        return (frames, parser.counters)
    }

    static func dec(_ s: String) -> ScaleDecimal { ScaleDecimal(s)! }

    // MARK: Yaohua XK3190-A9 tF=0

    @Test("Yaohua: the manual's example 02 2B 30 30 32 30 30 30 32 31 42 03 is +20.00 (XOR 0x1B)")
    func yaohuaManualExample() {
        let (frames, counters) = Self.parse(.yaohuaTF0, [0x02, 0x2B, 0x30, 0x30, 0x32, 0x30, 0x30, 0x30, 0x32, 0x31, 0x42, 0x03])
        #expect(frames.count == 1)
        let f = frames[0]
        #expect(f.weight == Self.dec("20.00"))
        #expect(f.weight?.mantissa == 2000 && f.weight?.decimals == 2, "the indicator's own form is kept")
        #expect(f.unit == nil && f.motion == nil && f.overRange == nil && f.kind == .displayed && f.length == 12)
        #expect(counters.frames == 1 && counters.badChecksums == 0 && counters.discardedBytes == 0 && counters.bytes == 12)
    }

    @Test("Yaohua: negative, no decimals, lower-case hex; a wrong XOR is counted and dropped")
    func yaohuaVariants() {
        // "-001234", decimals '0': XOR 2D^30^30^31^32^33^34^30 = 0x19 → "19".
        let negative: [UInt8] = [0x02, 0x2D, 0x30, 0x30, 0x31, 0x32, 0x33, 0x34, 0x30, 0x31, 0x39, 0x03]
        // "+012345", decimals '3' (12.345): XOR 2B^30^31^32^33^34^35^33 = 0x19, sent here in lower case as "19" → same.
        let threeDecimals: [UInt8] = [0x02, 0x2B, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x33, 0x31, 0x39, 0x03]
        // The manual's frame with 'b' (0x62) for 'B': lower-case hex is accepted.
        let lowerHex: [UInt8] = [0x02, 0x2B, 0x30, 0x30, 0x32, 0x30, 0x30, 0x30, 0x32, 0x31, 0x62, 0x03]
        // The manual's frame with XOR "1C": wrong.
        let badXOR: [UInt8] = [0x02, 0x2B, 0x30, 0x30, 0x32, 0x30, 0x30, 0x30, 0x32, 0x31, 0x43, 0x03]
        let (frames, counters) = Self.parse(.yaohuaTF0, negative + threeDecimals + badXOR + lowerHex)
        #expect(frames.map(\.weight) == [Self.dec("-1234"), Self.dec("12.345"), Self.dec("20.00")])
        #expect(counters.frames == 3 && counters.badChecksums == 1 && counters.discardedBytes == 0)
    }

    @Test("Yaohua: decimals beyond '4', a sign that is not + or -, and a missing ETX are framing errors")
    func yaohuaFramingErrors() {
        let good: [UInt8] = [0x02, 0x2B, 0x30, 0x30, 0x32, 0x30, 0x30, 0x30, 0x32, 0x31, 0x42, 0x03]
        var decimals5 = good
        decimals5[8] = 0x35
        var space = good
        space[1] = 0x20
        var noETX = good
        noETX[11] = 0x30
        let (frames, counters) = Self.parse(.yaohuaTF0, decimals5 + space + noETX + good)
        #expect(frames.count == 1)
        #expect(counters.discardedBytes == 36 && counters.overlongFrames == 1 && counters.badChecksums == 0)
    }

    @Test("A frame cut short by the next one: the next one is found inside the broken one (resynchronisation)")
    func cutShort() {
        let good: [UInt8] = [0x02, 0x2B, 0x30, 0x30, 0x32, 0x30, 0x30, 0x30, 0x32, 0x31, 0x42, 0x03]
        // STX + 0 2 … then the line drops bytes: the next frame's STX arrives where a digit should be.
        let (frames, counters) = Self.parse(.yaohuaTF0, Array(good[0..<5]) + good)
        #expect(frames.count == 1 && counters.discardedBytes == 5)
        // Toledo: a partial frame whose "SWB" is the next STX and whose "SWC" the next SWA — the real frame is
        // still found when the impostor breaks, three bytes later.
        let toledo = Self.toledo(0x2A, 0x30, 0x20, "012340")
        let (t, tc) = Self.parse(.toledoContinuous, [0x02, 0x2A] + toledo)
        #expect(t.map(\.weight) == [Self.dec("12340")] && tc.discardedBytes == 2)
    }

    // MARK: Toledo continuous

    /// STX SWA SWB SWC, six weight characters, six tare characters, CR.
    static func toledo(_ swa: UInt8, _ swb: UInt8, _ swc: UInt8, _ weight: String, _ tare: String = "000000") -> [UInt8] {
        [0x02, swa, swb, swc] + Array(weight.utf8) + Array(tare.utf8) + [0x0D]
    }

    @Test("Toledo: gross, stable, kg — SWA 0x2A (bit 5, ×1 in bits 3–4, code 2 = no decimals), SWB 0x30 (bit 5, b4 kg), SWC 0x20")
    func toledoGross() {
        let (frames, counters) = Self.parse(.toledoContinuous, Self.toledo(0x2A, 0x30, 0x20, "012340"))
        #expect(counters.frames == 1)
        let f = frames[0]
        #expect(f.weight == Self.dec("12340") && f.unit == .kilogram && f.kind == .gross)
        #expect(f.motion == false && f.overRange == false && f.underRange == false && f.tare == .zero)
        #expect(f.toledoStatus?.increment == 1 && f.toledoStatus?.powerUpNotZeroed == false && f.length == 17)
    }

    @Test("Toledo: SWB status bits — net and motion, negative, over capacity, under zero, power-up, lb")
    func toledoStatusBits() {
        // 0x39 = 0x20 | b4 kg | b3 motion | b0 net; tare 12340.
        let net = Self.toledo(0x2A, 0x39, 0x20, "002500", "012340")
        // 0x32 = 0x20 | b4 kg | b1 negative.
        let negative = Self.toledo(0x2A, 0x32, 0x20, "000060")
        // 0x34 = 0x20 | b4 kg | b2 out of range, positive: over capacity; the digits are still a weight.
        let over = Self.toledo(0x2A, 0x34, 0x20, "999999")
        // 0x36 = 0x20 | b4 | b2 | b1: out of range and negative: under zero.
        let under = Self.toledo(0x2A, 0x36, 0x20, "001000")
        // Out of range with dashes for digits: a frame without a weight.
        let dashes = Self.toledo(0x2A, 0x34, 0x20, "------")
        // 0x70 = 0x20 | b6 power-up not zeroed | b4.
        let powerUp = Self.toledo(0x2A, 0x70, 0x20, "000000")
        // 0x20: b4 clear and SWC units 000: lb.
        let pounds = Self.toledo(0x2A, 0x20, 0x20, "044100")
        // Fairbanks sends SWB bit 5 as 0: 0x10 = kg only.
        let fairbanks = Self.toledo(0x2A, 0x10, 0x20, "012340")
        let (f, counters) = Self.parse(.toledoContinuous, net + negative + over + under + dashes + powerUp + pounds + fairbanks)
        #expect(counters.frames == 8 && counters.discardedBytes == 0)
        guard f.count == 8 else { return }
        #expect(f[0].kind == .net && f[0].motion == true && f[0].weight == Self.dec("2500") && f[0].tare == Self.dec("12340"))
        #expect(f[1].weight == Self.dec("-60") && f[1].underRange == false && f[1].overRange == false)
        #expect(f[2].overRange == true && f[2].underRange == false && f[2].weight == Self.dec("999999"))
        #expect(f[3].underRange == true && f[3].overRange == false && f[3].weight == Self.dec("-1000"))
        #expect(f[4].overRange == true && f[4].weight == nil)
        #expect(f[5].toledoStatus?.powerUpNotZeroed == true && f[5].weight == .zero)
        #expect(f[6].unit == .pound && f[6].weight == Self.dec("44100"))
        #expect(f[7].unit == .kilogram && f[7].weight == Self.dec("12340") && f[7].motion == false)
    }

    @Test("Toledo: every decimal code of SWA bits 0–2 applied to the digits 012345", arguments: [
        (UInt8(0x28), "1234500"), (0x29, "123450"), (0x2A, "12345"), (0x2B, "1234.5"), (0x2C, "123.45"),
        (0x2D, "12.345"), (0x2E, "1.2345"), (0x2F, "0.12345"),
    ])
    func toledoDecimalCodes(swa: UInt8, expected: String) {
        let (frames, _) = Self.parse(.toledoContinuous, Self.toledo(swa, 0x30, 0x20, "012345", "000100"))
        #expect(frames.first?.weight == Self.dec(expected))
        // The tare is at the same position: 000100 scaled like the weight.
        let tareMantissa: Int64 = switch swa & 7 {
        case 0: 10_000
        case 1: 1_000
        default: 100
        }
        #expect(frames.first?.tare == ScaleDecimal(mantissa: tareMantissa, decimals: max(0, Int(swa & 7) - 2)))
    }

    @Test("Toledo: SWC units — g, t, oz, short ton, and an unknown code", arguments: [
        (UInt8(0x21), ScaleUnit.gram), (0x22, .tonne), (0x23, .ounce), (0x27, .shortTon), (0x24, .unrecognized),
    ])
    func toledoUnits(swc: UInt8, unit: ScaleUnit) {
        let (frames, _) = Self.parse(.toledoContinuous, Self.toledo(0x2A, 0x30, swc, "001000"))
        #expect(frames.first?.unit == unit)
    }

    @Test("Toledo: blanked leading zeros are read as zeros")
    func toledoLeadingBlanks() {
        let (frames, counters) = Self.parse(.toledoContinuous, Self.toledo(0x2A, 0x30, 0x20, "  1234", "     0"))
        #expect(frames.first?.weight == Self.dec("1234") && frames.first?.tare == .zero && counters.discardedBytes == 0)
        // A blank after a digit is not a blanked zero: the frame is broken.
        let (none, c2) = Self.parse(.toledoContinuous, Self.toledo(0x2A, 0x30, 0x20, "12 345"))
        #expect(none.isEmpty && c2.discardedBytes == 17)
    }

    @Test("Toledo with checksum: two frames checked by hand, one with a wrong checksum counted and dropped")
    func toledoChecksum() {
        // 02 2A 30 20 "012340" "000000" 0D: sum = 2 + 42 + 48 + 32 + (48+49+50+51+52+48 = 298) + 6×48 (288) + 13 = 723;
        // 723 mod 128 = 83; two's complement in 7 bits: 128 − 83 = 45 = 0x2D ('-'). Check: 723 + 45 = 768 = 6 × 128.
        let gross = Self.toledo(0x2A, 0x30, 0x20, "012340") + [0x2D]
        // 02 2C 30 22 "002000" "001450" 0D (20.00 t, tare 14.50 t): sum = 2 + 44 + 48 + 34 + 290 + 298 + 13 = 729;
        // 729 mod 128 = 89; 128 − 89 = 39 = 0x27 ('\'').
        let tonnes = Self.toledo(0x2C, 0x30, 0x22, "002000", "001450") + [0x27]
        // 02 2A 39 20 "002500" "012340" 0D: sum = 2 + 42 + 57 + 32 + 295 + 298 + 13 = 739; 739 mod 128 = 99;
        // 128 − 99 = 29 = 0x1D. Sent as 0x1E: wrong.
        let bad = Self.toledo(0x2A, 0x39, 0x20, "002500", "012340") + [0x1E]
        let (frames, counters) = Self.parse(.toledoContinuous, checksum: true, gross + bad + tonnes)
        #expect(frames.map(\.weight) == [Self.dec("12340"), Self.dec("20.00")])
        #expect(frames.map(\.unit) == [.kilogram, .tonne])
        #expect(frames.map(\.length) == [18, 18] && frames[1].tare == Self.dec("14.5"))
        #expect(counters.frames == 2 && counters.badChecksums == 1 && counters.discardedBytes == 0)
        #expect(ScaleFrameEncoder.toledoChecksum(gross.dropLast()) == 0x2D)

        // Read without `checksum`, the checksum bytes are garbage between frames.
        let (plain, c2) = Self.parse(.toledoContinuous, gross + tonnes)
        #expect(plain.count == 2 && c2.discardedBytes == 2)
    }

    @Test("Toledo: a frame that runs past its CR is over-long; SWA with bit 6 set or a byte above 0x7F is a framing error")
    func toledoFramingErrors() {
        var long = Self.toledo(0x2A, 0x30, 0x20, "012340")
        long[16] = 0x30
        let swa = Self.toledo(0x6A, 0x30, 0x20, "012340")
        let high = Self.toledo(0x2A, 0xB0, 0x20, "012340")
        let good = Self.toledo(0x2A, 0x30, 0x20, "000020")
        let (frames, counters) = Self.parse(.toledoContinuous, long + swa + high + good)
        #expect(frames.map(\.weight) == [Self.dec("20")])
        #expect(counters.overlongFrames == 1 && counters.discardedBytes == 51)
    }

    // MARK: XK3190-A12

    @Test("A12: gross, net and tare lines")
    func a12Lines() {
        let text = "ww000.000kg\r\nww012.340kg\r\nwn001.500kg\r\nwt014.000kg\r\nww-00.500kg\r\nww025.06t\r\nww044100lb\r\n"
        let (f, counters) = Self.parse(.xk3190A12, Array(text.utf8))
        #expect(counters.frames == 7 && counters.discardedBytes == 0)
        guard f.count == 7 else { return }
        #expect(f.map(\.kind) == [.gross, .gross, .net, .tare, .gross, .gross, .gross])
        #expect(f.map(\.weight) == ["0", "12.34", "1.5", "14", "-0.5", "25.06", "44100"].map(Self.dec))
        #expect(f[1].weight?.decimals == 3, "the indicator's three decimals are kept")
        #expect(f.map(\.unit) == [.kilogram, .kilogram, .kilogram, .kilogram, .kilogram, .tonne, .pound])
        #expect(f.allSatisfy { $0.motion == nil && $0.overRange == nil })
        #expect(f[0].length == 11)
    }

    @Test("A12: lines without terminators, upper-case units; garbage and too-long numbers")
    func a12Resync() {
        let text = "ww000.100KGwn000.050kgxyzww1234567890123kgww000.200kg"
        let (f, counters) = Self.parse(.xk3190A12, Array(text.utf8))
        #expect(f.map(\.weight) == ["0.1", "0.05", "0.2"].map(Self.dec))
        #expect(counters.overlongFrames == 1)
        // xyz (3) and ww1234567890123kg (17).
        #expect(counters.discardedBytes == 20)
    }
}
