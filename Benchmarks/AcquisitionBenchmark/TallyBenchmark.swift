import KilnTallyCore
import Tally

/// Readings through the tally engine, for Benchmarks/callgrind.sh (`tally N`): a BW500 stream (totalizer + rate,
/// every reading credited to its shift), a weighbridge (weight + motion bit, trucks passing) and a bunker level,
/// with 1-hour shifts (shorter than a plant's 8, so closing and sealing a report is in the figure) and a truck every
/// 10 minutes. One reading in eight is a clock tick.
enum TallyBenchmark {
    static func run(readings n: Int) throws {
        let calendar = try ShiftCalendar(cycle: .seconds(3600), anchor: UTCInstant(secondsSinceEpoch: 1_795_363_200), names: ["A", "B", "C"])
        let stream = StreamConfig(name: "msw", material: "msw", feedPoint: .calciner, device: "belt", totalizer: "total1",
                                  rate: "rate", maxGap: .seconds(30), runThresholdTonnesPerHour: 0.5, disagreementTolerance: 0.05)
        let source = StreamSource(device: "belt", totalizer: "total1",
                                  totalizerParameters: .init(modulus: Mass(milligrams: 4_294_967_296 * 1_000_000), resettable: true, maxRateTonnesPerHour: 60),
                                  rate: "rate", maxGap: .seconds(30), runThresholdTonnesPerHour: 0.5)
        var setup = TallyEngine.Setup(site: "plant-a", node: "kiln1", configHash: "0123456789abcdef", calendar: calendar,
                                      grace: .seconds(2), streams: [.init(stream, source)], weighbridges: [
                                          .init(WeighbridgeConfig(name: "wb", device: "wb", defaultMaterial: "msw"),
                                           WeighbridgeChannels(weight: "weight", zeroBand: 40, motion: "unstable")),
                                      ])
        setup.stocks = [.init(StockConfig(material: "msw", device: "bunker", channel: "level"), 0.5)]
        var engine = TallyEngine(setup: setup)
        var t = Int64(1_795_363_200) * 1_000_000_000
        var total = 1_000.0
        var seq: UInt64 = 0
        var records = 0
        var k = 0
        while seq < UInt64(n) {
            t += 125_000_000  // 8 inputs a second
            let time = UTCInstant(nanosecondsSinceEpoch: t)
            seq += 1
            let input: TallyInput
            switch k % 8 {
            case 0: input = .tick(sequence: seq, time: time)
            case 1, 4:
                total += 0.001
                input = .reading(sequence: seq, Reading(device: "belt", channel: "total1", time: time, value: .double(total), unit: .tonne, raw: [0, 1]))
            case 2, 5: input = .reading(sequence: seq, Reading(device: "belt", channel: "rate", time: time, value: .double(36), unit: .tonnePerHour, raw: [0, 2]))
            case 3:
                // A truck every 10 minutes: 0 → 30 t (moving) → stable → 0.
                let phase = (t / 1_000_000_000) % 600
                let kg: Int64 = phase < 5 ? 0 : (phase < 8 ? 20_000 : (phase < 16 ? 30_000 : (phase < 18 ? 12_000 : 0)))
                input = .reading(sequence: seq, Reading(device: "wb", channel: "weight", time: time, value: .int(kg), unit: .kilogram, raw: [0, 3]))
            case 6:
                let phase = (t / 1_000_000_000) % 600
                input = .reading(sequence: seq, Reading(device: "wb", channel: "unstable", time: time.adding(.nanoseconds(-62_500_000)),
                                                        value: .bool(phase >= 5 && phase < 9 || phase >= 16 && phase < 18), raw: [0]))
            default: input = .reading(sequence: seq, Reading(device: "bunker", channel: "level", time: time, value: .double(50), unit: .percent, raw: [4]))
            }
            k += 1
            for case .record in engine.consume(input) { records += 1 }
        }
        print("tally: \(n) inputs, \(records) records sealed, chain head \(engine.state.chainHead.prefix(12))")
    }
}
