import KilnTallyCore
import Tally
import Testing

/// A stream's figures per shift: deltas split at boundaries with interpolated boundary values, coverage, flags,
/// and contributions to closed shifts coming back as amendments.
@Suite("Stream tally")
struct StreamTallyTests {
    static let day = UTCInstant(secondsSinceEpoch: 1_795_392_000)  // 2026-11-23T16:00:00Z = 2026-11-24 00:00 +08:00

    /// Three 8-hour shifts from `day` (a stand-in for the calendar: UTC, no zone).
    static func shifts(_ a: UTCInstant, _ b: UTCInstant) -> [Shift] {
        let eight: Int64 = 8 * 3600 * 1_000_000_000
        let base = day.nanosecondsSinceEpoch
        var k = (a.nanosecondsSinceEpoch - base).floorDiv(eight)
        var out: [Shift] = []
        while base + k * eight <= b.nanosecondsSinceEpoch {
            let start = UTCInstant(nanosecondsSinceEpoch: base + k * eight)
            out.append(Shift(id: ShiftID(localDate: "d\(k / 3)", name: ["A", "B", "C"][Int(((k % 3) + 3) % 3)]), start: start,
                             end: start.adding(.seconds(8 * 3600)), crew: nil, localStart: start.rfc3339, localEnd: start.adding(.seconds(8 * 3600)).rfc3339))
            if base + (k + 1) * eight > b.nanosecondsSinceEpoch { break }
            k += 1
        }
        return out
    }

    static func spans(_ a: UTCInstant, _ b: UTCInstant) -> [ShiftSpan] { shifts(a, b).map(ShiftSpan.init) }

    static func at(_ h: Int, _ m: Int, _ s: Int) -> UTCInstant { day.adding(.seconds(Int64(h * 3600 + m * 60 + s))) }

    static func total(_ tonnes: Double, _ t: UTCInstant, quality: Quality = .good) -> Reading {
        Reading(device: "belt1", channel: "total1", time: t, value: .double(tonnes), unit: .tonne, quality: quality)
    }

    static let source = StreamSource(
        device: "belt1", totalizer: "total1",
        // Worked example 3 feeds 0.250 t in 5 s (180 t/h): a belt designed for 200 t/h.
        totalizerParameters: .init(modulus: Mass(milligrams: 4_294_967_296 * 1_000_000), resettable: true, maxRateTonnesPerHour: 200),
        rate: "rate", maxGap: .seconds(30), runThresholdTonnesPerHour: 0.5)

    @Test("worked example 3 through the stream: 0.100 t before 08:00 and 0.150 t after; 1,000.100 t ends A and starts B")
    func boundary() {
        var stream = StreamTally(source: Self.source)
        #expect(stream.consume(Self.total(999.990, Self.at(7, 59, 50)), calendar: Self.spans).isEmpty)
        _ = stream.consume(Self.total(1_000.000, Self.at(7, 59, 58)), calendar: Self.spans)
        _ = stream.consume(Self.total(1_000.250, Self.at(8, 0, 3)), calendar: Self.spans)
        _ = stream.consume(Self.total(1_000.300, Self.at(8, 0, 13)), calendar: Self.spans)
        let a = stream.close(Self.shifts(Self.at(7, 0, 0), Self.at(7, 0, 0))[0])
        #expect(a.fed == Mass(kilograms: 110))  // 0.010 t, then 0.100 t of the split
        #expect(a.totalizerEnd == Mass(kilograms: 1_000_100))
        #expect(a.conditions.contains(.communicationGap), "A's start value was not interpolated: the stream began in A")
        let b = stream.close(Self.shifts(Self.at(8, 0, 0), Self.at(8, 0, 0))[0])
        #expect(b.totalizerStart == Mass(kilograms: 1_000_100))
        #expect(b.fed == Mass(kilograms: 200) && b.totalizerEnd == Mass(kilograms: 1_000_300))
        #expect(b.covered == .seconds(13), "08:00:00-08:00:13 covered by readings 10 s and 5 s apart")
        // B covers 13 s of its 8 hours, and no reading after its end has come yet: both say B.
        #expect(DataFlag.worst(b.conditions) == .communicationGap)
    }

    @Test("a device back after an outage spanning a closed boundary amends the closed shift; a long gap flags B")
    func amendment() {
        var stream = StreamTally(source: Self.source)
        _ = stream.consume(Self.total(2_000.000, Self.at(7, 50, 0)), calendar: Self.spans)
        _ = stream.consume(Self.total(0, Self.at(7, 55, 0), quality: .timeout), calendar: Self.spans)
        let a = stream.close(Self.shifts(Self.at(7, 0, 0), Self.at(7, 0, 0))[0])
        #expect(a.fed == .zero && a.conditions.contains(.communicationGap))
        // Back at 08:10 with 2,001.000 t: 1 t over 20 min, half of it before 08:00 — which belongs to the closed A.
        let amendments = stream.consume(Self.total(2_001.000, Self.at(8, 10, 0)), calendar: Self.spans)
        #expect(amendments.map(\.fed) == [Mass(kilograms: 500)])
        #expect(amendments.first?.totalizerEnd == Mass(kilograms: 2_000_500))
        let b = stream.close(Self.shifts(Self.at(8, 0, 0), Self.at(8, 0, 0))[0])
        #expect(b.fed == Mass(kilograms: 500) && b.totalizerStart == Mass(kilograms: 2_000_500))
        #expect(b.conditions.contains(.communicationGap), "20 min between good readings is more than max_gap")
        #expect(b.covered == .zero)
    }

    @Test("property: over random days, shift figures (with amendments) add up to the counted deltas, and end - start = fed")
    func conservation() {
        var rng = SplitMix64(seed: 3)
        for trial in 0..<40 {
            var stream = StreamTally(source: Self.source)
            var value = 10_000.0 + Double(rng.next() % 1_000)
            var t = Self.at(0, 0, 1)
            var total = Mass.zero
            var first: Mass?
            var closedFed = Mass.zero
            var nextClose = Self.at(8, 0, 0).adding(.seconds(60))
            while t < Self.at(23, 50, 0) {
                let dt = Int64(1 + rng.next() % (rng.next() % 10 == 0 ? 1_800 : 20))
                t = t.adding(.seconds(dt))
                let fed = Double(rng.next() % UInt64(14 * dt)) / 1000  // up to 50 t/h, in whole kg
                value += fed
                let r = Self.total(value, t)
                for a in stream.consume(r, calendar: Self.spans) { closedFed += a.fed }
                if first == nil { first = Mass(value, .tonne) }
                total = Mass(value, .tonne)! - first!
                if t >= nextClose {
                    let shift = Self.shifts(nextClose.adding(.seconds(-3600)), nextClose.adding(.seconds(-3600)))[0]
                    let f = stream.close(shift)
                    closedFed += f.fed
                    if let s = f.totalizerStart, let e = f.totalizerEnd { #expect(e - s == f.fed, "trial \(trial) \(shift.id)") }
                    nextClose = nextClose.adding(.seconds(8 * 3600))
                }
            }
            // The last reading may be past midnight: close every shift up to it.
            for shift in Self.shifts(Self.at(0, 0, 0), t) { closedFed += stream.close(shift).fed }
            #expect(closedFed == total, "trial \(trial)")
        }
    }
}

extension Int64 {
    fileprivate func floorDiv(_ d: Int64) -> Int64 { self >= 0 ? self / d : -((-self + d - 1) / d) }
}
