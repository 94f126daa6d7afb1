import KilnTallyCore
import SerialScale
import Testing

/// Streams made of intact frames, broken frames and garbage, fed in random pieces: every intact frame must come
/// out exactly once with its value, nothing else may, and the counters must equal what was injected.
@Suite("Parser fuzz")
struct FuzzTests {
    struct Config: Sendable, CustomTestStringConvertible {
        var scaleProtocol: ScaleProtocol
        var checksum: Bool
        var testDescription: String { scaleProtocol.rawValue + (checksum ? " with checksum" : "") }
    }

    static let configs = [
        Config(scaleProtocol: .toledoContinuous, checksum: false), Config(scaleProtocol: .toledoContinuous, checksum: true),
        Config(scaleProtocol: .yaohuaTF0, checksum: false), Config(scaleProtocol: .xk3190A12, checksum: false),
    ]

    /// What a stream was made of, and so what the parser must report.
    struct Expected {
        var bytes: [UInt8] = []
        var frames: [ScaleFrame] = []
        var badChecksums: UInt64 = 0
        var discarded: UInt64 = 0
        var overlong: UInt64 = 0
    }

    static func isStart(_ b: UInt8, _ p: ScaleProtocol) -> Bool {
        p == .xk3190A12 ? b == UInt8(ascii: "w") || b == 0x0D || b == 0x0A : b == 0x02
    }

    /// Garbage between frames: random bytes, none of which starts a frame (or is an A12 line end).
    static func garbage(_ p: ScaleProtocol, _ r: inout SplitMix64) -> [UInt8] {
        (0..<r.int(1...12)).map { _ in
            var b: UInt8
            repeat { b = UInt8(truncatingIfNeeded: r.next()) } while isStart(b, p)
            return b
        }
    }

    enum Damage: CaseIterable { case grammar, checksum, terminator }

    /// Breaks an encoded frame; returns nil when this frame cannot take that damage (no checksum to break, or a
    /// Toledo checksum byte that is an STX, which would start a frame of its own once the frame is broken).
    static func damage(_ bytes: [UInt8], _ d: Damage, _ c: Config, _ r: inout SplitMix64) -> [UInt8]? {
        var b = bytes
        switch c.scaleProtocol {
        case .toledoContinuous:
            if c.checksum && b[17] == 0x02 { return nil }
            switch d {
            case .grammar:
                let i = r.int(1...15)
                b[i] = switch i {
                case 1, 3: 0x41  // bit 6 set (SWA) / bit 5 clear (SWC)
                case 2: 0x80 | b[2]  // bit 7
                default: 0x01  // a control byte among the digits
                }
            case .checksum:
                guard c.checksum else { return nil }
                var v: UInt8
                repeat { v = UInt8(r.int(0...127)) } while v == b[17] || v == 0x02
                b[17] = v
            case .terminator:
                b[16] = 0x35
            }
        case .yaohuaTF0:
            switch d {
            case .grammar:
                let i = r.int(1...10)
                b[i] = i == 8 ? 0x37 : 0x78  // decimals '7'; 'x' elsewhere
            case .checksum:
                let i = r.int(2...7)  // another digit: grammar intact, XOR wrong
                b[i] = 0x30 + (b[i] - 0x30 + UInt8(r.int(1...9))) % 10
            case .terminator:
                b[11] = 0x30
            }
        case .xk3190A12:
            switch d {
            case .grammar:
                // A digit of the number (positions after the prefix that hold digits) becomes 'x'.
                let digits = (2..<b.count).filter { (0x30...0x39).contains(b[$0]) }
                b[r.pick(digits)] = 0x78
            case .checksum:
                return nil
            case .terminator:
                // A number too long for any weight: eleven digits.
                return Array("ww".utf8) + (0..<11).map { _ in UInt8(0x30 + r.int(0...9)) } + Array("kg\r\n".utf8)
            }
        }
        return b
    }

    static func stream(_ c: Config, items: Int, _ r: inout SplitMix64) -> Expected {
        var e = Expected()
        let p = c.scaleProtocol
        for i in 0..<items {
            let roll = r.unit()
            if roll < 0.15 && i < items - 1 {
                let g = garbage(p, &r)
                e.bytes += g
                e.discarded += UInt64(g.count)
                continue
            }
            let frame = RandomFrames.frame(p, &r)
            let bytes = try! ScaleFrameEncoder.encode(frame, as: p, checksum: c.checksum)
            if roll < 0.4 && i < items - 1, let d = Damage.allCases.randomElement(using: &r),
               let broken = damage(bytes, d, c, &r) {
                e.bytes += broken
                switch d {
                case .checksum:
                    e.badChecksums += 1
                case .grammar, .terminator:
                    // Every byte is discarded but an A12 line's CR LF, which are line ends.
                    e.discarded += UInt64(broken.filter { !(p == .xk3190A12 && ($0 == 0x0D || $0 == 0x0A)) }.count)
                    if d == .terminator { e.overlong += 1 }
                }
                continue
            }
            e.bytes += bytes
            e.frames.append(frame)
        }
        return e
    }

    @Test("intact frames decoded exactly once, counters exact, whatever the pieces", arguments: configs)
    func structuredStreams(c: Config) {
        var r = SplitMix64(seed: 0x5EED_0008 &+ UInt64(c.scaleProtocol.rawValue.utf8.count) &+ (c.checksum ? 99 : 0))
        var totals = (frames: 0, bad: UInt64(0), discarded: UInt64(0), overlong: UInt64(0))
        for iteration in 0..<2_000 {
            let e = Self.stream(c, items: r.int(1...24), &r)
            var parser = ScaleStreamParser(protocol: c.scaleProtocol, checksum: c.checksum)
            var decoded: [ScaleFrame] = []
            // Split at random points, as a serial read returns whatever has arrived.
            var at = 0
            while at < e.bytes.count {
                let n = min(e.bytes.count - at, r.chance(0.3) ? 1 : r.int(1...40))
                parser.feed(e.bytes[at..<(at + n)]) { decoded.append($0) }
                at += n
            }
            let ok = decoded.count == e.frames.count && zip(decoded, e.frames).allSatisfy { RandomFrames.same($0, $1) }
            #expect(ok, "iteration \(iteration): decoded \(decoded.count) frames of \(e.frames.count)")
            let k = parser.counters
            #expect(k.bytes == UInt64(e.bytes.count) && k.frames == UInt64(e.frames.count), "iteration \(iteration)")
            #expect(k.badChecksums == e.badChecksums, "iteration \(iteration)")
            #expect(k.discardedBytes == e.discarded, "iteration \(iteration): \(e.bytes)")
            #expect(k.overlongFrames == e.overlong, "iteration \(iteration)")
            #expect(parser.pendingBytes == 0, "iteration \(iteration)")
            if !ok || k.discardedBytes != e.discarded { break }
            totals.frames += e.frames.count
            totals.bad += e.badChecksums
            totals.discarded += e.discarded
            totals.overlong += e.overlong
        }
        // The run exercised every kind of damage.
        #expect(totals.frames > 10_000 && totals.discarded > 10_000 && totals.overlong > 100)
        #expect(c.scaleProtocol == .xk3190A12 || (c.scaleProtocol == .toledoContinuous && !c.checksum) || totals.bad > 100)
    }

    @Test("random bytes: no trap, every byte accounted for, and a frame after the noise is decoded", arguments: configs)
    func randomBytes(c: Config) {
        var r = SplitMix64(seed: 0xBAD_B17E5 &+ UInt64(c.scaleProtocol.rawValue.utf8.count) &+ (c.checksum ? 7 : 0))
        let p = c.scaleProtocol
        // Bytes weighted towards what frames are made of, so the parser gets deep into frames before they break.
        let alphabet: [UInt8] = [0x02, 0x03, 0x0D, 0x0A, 0x20, 0x2B, 0x2D, 0x2E] + Array(0x30...0x39) + Array("wntkglbABCDEF*0 \"".utf8)
        var decodedFrames = 0
        for iteration in 0..<2_000 {
            var parser = ScaleStreamParser(protocol: p, checksum: c.checksum)
            var noise: [UInt8] = []
            for _ in 0..<r.int(0...300) {
                noise.append(r.chance(0.5) ? r.pick(alphabet) : UInt8(truncatingIfNeeded: r.next()))
            }
            var frameBytes = 0
            parser.feed(noise) { f in
                decodedFrames += 1
                frameBytes += f.length
                // Whatever noise decodes to is still a frame the protocol can carry.
                #expect(f.weight.map { $0.mantissa.magnitude <= 99_999_900 } ?? true)
            }
            let k = parser.counters
            #expect(k.bytes == UInt64(noise.count))
            // Frames, dropped frames, discarded and pending bytes never add up to more than what came in.
            #expect(UInt64(frameBytes) + k.discardedBytes + UInt64(parser.pendingBytes) <= k.bytes)
            let frame = RandomFrames.frame(p, &r)
            // An A12 line needs a line end before it when the noise stopped inside a number that could go on.
            let intact = (p == .xk3190A12 ? [0x0D] : []) + (try! ScaleFrameEncoder.encode(frame, as: p, checksum: c.checksum))
            let after = parser.feed(intact)
            #expect(after.count == 1 && after.last.map { RandomFrames.same($0, frame) } == true,
                    "iteration \(iteration): noise \(noise) then \(intact) gave \(after)")
        }
        #expect(decodedFrames >= 0)
    }

    @Test("encode then parse gives the frame back, for random weights and status", arguments: configs)
    func roundTrip(c: Config) throws {
        var r = SplitMix64(seed: 0x20_0017 &+ UInt64(c.scaleProtocol.rawValue.utf8.count) &+ (c.checksum ? 3 : 0))
        var parser = ScaleStreamParser(protocol: c.scaleProtocol, checksum: c.checksum)
        for _ in 0..<5_000 {
            let frame = RandomFrames.frame(c.scaleProtocol, &r)
            let bytes = try ScaleFrameEncoder.encode(frame, as: c.scaleProtocol, checksum: c.checksum)
            let back = parser.feed(bytes)
            #expect(back.count == 1 && RandomFrames.same(back[0], frame), "\(frame) → \(bytes) → \(back)")
            #expect(back.first?.length == bytes.count - (c.scaleProtocol == .xk3190A12 ? 2 : 0))
        }
        #expect(parser.counters.frames == 5_000 && parser.counters.discardedBytes == 0)
    }
}
