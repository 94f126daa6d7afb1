import Acquisition
import KilnTallyCore

/// (c) Decodes N readings through the real decode path — per request one wall-clock read and one clock-sync check,
/// then `RegisterDecoder.reading` for each channel of the request, exactly as BusPoller does after a read — so
/// `valgrind --tool=callgrind` can count instructions (Benchmarks/callgrind.sh runs it at two N and divides the
/// difference). No Modbus I/O: this is the decode share of the per-reading budget.
enum DecodeBenchmark {
    /// A plant mix: a BW500 (UINT32 × 0.001 with its sentinels), a weigh feeder with float32 in CDAB order, a
    /// weighbridge (int32 weight, status bits of a 32-bit word, a ticket string) and a running coil.
    static let channels: [ChannelConfig] = {
        let bw500Sentinels: Set<Int64> = [22222, 30000, 30001, -32768, 32767]
        return ["rate", "load", "speed", "total1", "total2"].enumerated().map {
            ChannelConfig(id: ChannelID($1), table: .holding, address: 1009 + 2 * $0, type: .uint32, scale: 0.001,
                          unit: .tonnePerHour, sentinels: bw500Sentinels)
        } + [
            ChannelConfig(id: "feed_rate", table: .input, address: 0, type: .float32, wordOrder: .cdab, unit: .kilogramPerHour),
            ChannelConfig(id: "feed_total", table: .input, address: 2, type: .float32, wordOrder: .cdab, unit: .kilogram),
            ChannelConfig(id: "weight", table: .holding, address: 0, type: .int32, unit: .kilogram),
            ChannelConfig(id: "unstable", table: .holding, address: 2, type: .bit, bit: 2, wordBits: 32),
            ChannelConfig(id: "net", table: .holding, address: 2, type: .bit, bit: 3, wordBits: 32),
            ChannelConfig(id: "ticket", table: .holding, address: 4, type: .string, length: 4),
            ChannelConfig(id: "running", table: .coil, address: 0, type: .bool),
        ]
    }()

    static func run(readings n: Int) {
        let plan = RequestPlanner.plan(channels, limits: .init())
        // The words each request returns; one register of each moves every round, so nothing is constant.
        var words = plan.map { r in (0..<r.count).map { UInt16(truncatingIfNeeded: ($0 &* 7919) &+ r.address) } }
        let clock = SystemClock()
        let device: DeviceID = "bw500"
        var produced = 0
        var checksum: UInt64 = 0
        var round: UInt16 = 0
        decoding: while true {
            round &+= 1
            for (k, request) in plan.enumerated() {
                words[k][0] = round
                let time = clock.now()
                let synced = clock.isSynchronized()
                for i in request.channels {
                    let reading = RegisterDecoder.reading(device: device, channel: channels[i], words: words[k],
                                                          requestAddress: request.address, time: time, clockSynchronized: synced)
                    checksum &+= fold(reading.value) &+ UInt64(reading.raw.count)
                    produced += 1
                    if produced == n { break decoding }
                }
            }
        }
        print("decoded \(n) readings of \(channels.count) channels in \(plan.count) requests (checksum \(checksum))")
    }

    /// Folds a value into the checksum, so the optimizer cannot drop the decoding.
    static func fold(_ value: ReadingValue) -> UInt64 {
        switch value {
        case .int(let v): UInt64(bitPattern: v)
        case .uint(let v): v
        case .double(let d): d.bitPattern
        case .bool(let b): b ? 1 : 2
        case .string(let s): UInt64(s.utf8.count)
        case .none: 3
        }
    }
}
