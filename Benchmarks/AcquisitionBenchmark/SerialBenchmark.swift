import Foundation
import KilnTallyCore
import SerialScale

/// Stream parser throughput: N bytes of encoded frames with 5 % garbage between them, per protocol, through
/// `ScaleStreamParser` and (for each frame) the mapping to readings. The reference is the wire: a 9600-baud line
/// carries 960 bytes a second, so the ratio says how many such lines one core could parse.
enum SerialBenchmark {
    static func run(bytes n: Int) {
        print("stream parsers: \(n) bytes per protocol, frames with ~5 % garbage")
        for (p, checksum) in [(ScaleProtocol.toledoContinuous, true), (.yaohuaTF0, false), (.xk3190A12, false)] {
            var random = SplitMix64(seed: 1)
            var stream: [UInt8] = []
            stream.reserveCapacity(n + 64)
            while stream.count < n {
                let kg = Int64(random.next() % 40_000)
                let frame = ScaleFrame(scaleProtocol: p, kind: .gross, weight: ScaleDecimal(mantissa: kg), unit: .kilogram,
                                       motion: random.next() % 2 == 0, overRange: false, underRange: false, tare: .zero)
                try! ScaleFrameEncoder.encode(frame, as: p, checksum: checksum, into: &stream)
                if random.next() % 20 == 0 { stream.append(0x7F) }
            }
            let layout = ScaleChannelLayout.builtin(for: p)
            let t = UTCInstant(nanosecondsSinceEpoch: 0)
            // Parsing alone, then parsing and making each frame's readings.
            var parser = ScaleStreamParser(protocol: p, checksum: checksum)
            var weights: Int64 = 0
            var start = ContinuousClock.now
            stream.withUnsafeBufferPointer { buffer in parser.feed(buffer) { weights &+= $0.weight?.mantissa ?? 0 } }
            let parseSeconds = (ContinuousClock.now - start).benchmarkSeconds
            var withReadings = ScaleStreamParser(protocol: p, checksum: checksum)
            var readings = 0
            start = ContinuousClock.now
            stream.withUnsafeBufferPointer { buffer in
                withReadings.feed(buffer) { frame in readings += layout.readings(of: frame, device: "wb", time: t).count }
            }
            let readingSeconds = (ContinuousClock.now - start).benchmarkSeconds
            let name = p.rawValue.padding(toLength: 18, withPad: " ", startingAt: 0)
            print(String(format: "  %@ parse %5.1f ns/byte (%5.1f MB/s, %.0f× a 9600-baud line); with readings %5.1f ns/byte, %4.0f ns/frame",
                         name as NSString, parseSeconds * 1e9 / Double(stream.count), Double(stream.count) / parseSeconds / 1e6,
                         Double(stream.count) / parseSeconds / 960, readingSeconds * 1e9 / Double(stream.count),
                         readingSeconds * 1e9 / Double(max(1, withReadings.counters.frames))))
            print("    \(parser.counters.frames) frames, \(readings) readings, \(parser.counters.discardedBytes) bytes discarded (checksum \(weights % 10))")
        }
    }
}

extension Duration {
    var benchmarkSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
