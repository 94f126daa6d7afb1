import KilnTallyCore
import Tally
import Testing

/// The issue's worked examples 1, 2, 3 and 5, and the totalizer rules against a brute-force reference.
@Suite("Totalizers, apportioning and integration")
struct StreamArithmeticTests {
    static let t0 = UTCInstant(secondsSinceEpoch: 1_795_420_800)  // 2026-11-24T00:00:00Z

    static func reading(_ value: Double, _ unit: Unit, at seconds: Double, quality: Quality = .good) -> Reading {
        Reading(device: "belt1", channel: "total1", time: t0.adding(.milliseconds(Int64(seconds * 1000))),
                value: .double(value), unit: unit, quality: quality)
    }

    static let bw500 = TotalizerTracker.Parameters(
        modulus: Mass(milligrams: 4_294_967_296 * 1_000_000), resettable: true, maxRateTonnesPerHour: 60)

    @Test("worked example 1: BW500 rollover, 4,294,967,000 counts then 1,204 counts of 0.001 t = 1.500 t")
    func rollover() {
        var t = TotalizerTracker(Self.bw500)
        #expect(t.consume(Self.reading(4_294_967.000, .tonne, at: 0)) == .baseline(value: Mass(kilograms: 4_294_967_000), at: Self.t0))
        guard case .delta(let d, _, _, _, _, let kind)? = t.consume(Self.reading(1.204, .tonne, at: 120)) else {
            Issue.record("no delta")
            return
        }
        #expect(d == Mass(kilograms: 1_500) && kind == .rollover)
    }

    @Test("worked example 2: a resettable kg counter from 52,340 kg to 120 kg is a reset: delta 120 kg")
    func reset() {
        // A uint32 kg counter: modulus 2^32 kg, so 52,340 kg is far from it.
        var t = TotalizerTracker(.init(modulus: Mass(kilograms: 4_294_967_296), resettable: true, maxRateTonnesPerHour: 60))
        _ = t.consume(Self.reading(52_340, .kilogram, at: 0))
        guard case .delta(let d, _, _, _, _, let kind)? = t.consume(Self.reading(120, .kilogram, at: 60)) else {
            Issue.record("no delta")
            return
        }
        #expect(d == Mass(kilograms: 120) && kind == .reset)
    }

    @Test("worked example 3: 1,000.000 t at 07:59:58, 1,000.250 t at 08:00:03: 0.100 t before 08:00, 0.150 t after")
    func boundarySplit() {
        let a = Self.t0.adding(.seconds(7 * 3600 + 59 * 60 + 58)), b = Self.t0.adding(.seconds(8 * 3600 + 3))
        let boundary = Self.t0.adding(.seconds(8 * 3600))
        let delta = Mass(kilograms: 250)
        #expect(Apportion.split(delta, from: a, to: b, at: [boundary]) == [Mass(kilograms: 100), Mass(kilograms: 150)])
        // The boundary value: end of one shift, start of the next.
        #expect(Mass(kilograms: 1_000_000) + Apportion.cumulative(delta, from: a, to: b, at: [boundary])[0] == Mass(kilograms: 1_000_100))
    }

    @Test("apportioned pieces always sum to the whole, whatever the cuts")
    func piecesSum() {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<2_000 {
            let mass = Mass(milligrams: Int64(rng.next() % 10_000_000_000_000))
            let span = Int64(1 + rng.next() % 86_400_000_000_000)
            let t1 = Self.t0.adding(.nanoseconds(span))
            let cuts = (0..<Int(rng.next() % 4)).map { _ in Self.t0.adding(.nanoseconds(Int64(rng.next() % UInt64(span)))) }.sorted()
            let pieces = Apportion.split(mass, from: Self.t0, to: t1, at: cuts)
            #expect(pieces.reduce(Mass.zero, +) == mass)
            #expect(pieces.allSatisfy { $0 >= .zero })
        }
    }

    @Test("worked example 5: 12.0 t/h at 08:00:00 and 18.0 t/h at 08:00:10 is 15 t/h for 10 s = 0.041667 t; a long gap adds nothing")
    func integration() {
        var r = RateIntegrator(maxGap: .seconds(30))
        func rate(_ v: Double, at s: Double) -> Reading {
            Reading(device: "belt1", channel: "rate", time: Self.t0.adding(.milliseconds(Int64(s * 1000))), value: .double(v), unit: .tonnePerHour)
        }
        #expect(r.consume(rate(12, at: 0)) == .first(Self.t0))
        guard case .segment(let s)? = r.consume(rate(18, at: 10)) else {
            Issue.record("no segment")
            return
        }
        let tonnes = s.tonnes(from: s.from, to: s.to)
        #expect(abs(tonnes - 15.0 * 10 / 3600) < 1e-12)
        #expect(Mass(tonnes, .tonne)?.kilogramsString == "41.667")
        // Half of it before a boundary in the middle: the rate there is 15 t/h, so (12 + 15) / 2 × 5 s.
        #expect(abs(s.tonnes(from: s.from, to: Self.t0.adding(.seconds(5))) - 13.5 * 5 / 3600) < 1e-12)
        // 60 s later is more than max_gap: not bridged.
        #expect(r.consume(rate(18, at: 70)) == .gap(from: Self.t0.adding(.seconds(10)), to: Self.t0.adding(.seconds(70))))
        // kg/h converts; a wall-clock step back is ignored.
        #expect(r.consume(Reading(device: "b", channel: "r", time: Self.t0.adding(.seconds(50)), value: .double(1), unit: .kilogramPerHour)) == nil)
    }

    @Test("sentinels, timeouts and a step back in time never count; a glitch is rejected and dropped; a real jump rebaselines")
    func rejectsAndRebaselines() {
        var t = TotalizerTracker(.init(modulus: nil, resettable: false, maxRateTonnesPerHour: 36))  // 10 kg/s
        _ = t.consume(Self.reading(1_000, .kilogram, at: 0))
        #expect(t.consume(Self.reading(0, .kilogram, at: 5, quality: .invalid)) == nil)
        #expect(t.consume(Self.reading(0, .kilogram, at: 5, quality: .timeout)) == nil)
        #expect(t.consume(Self.reading(2_000, .kilogram, at: -5)) == nil, "earlier than the baseline")
        // 10 s at up to 10 kg/s × 1.2 + 1 kg = 121 kg allowed: 100 kg counts.
        guard case .delta(let d, _, _, _, _, _)? = t.consume(Self.reading(1_100, .kilogram, at: 10)) else {
            Issue.record("no delta")
            return
        }
        #expect(d == Mass(kilograms: 100))
        // A glitch: 9,999 kg, then back on the line.
        guard case .rejected? = t.consume(Self.reading(9_999, .kilogram, at: 11)) else {
            Issue.record("glitch not rejected")
            return
        }
        guard case .delta(let d2, _, _, _, _, _)? = t.consume(Self.reading(1_120, .kilogram, at: 12)) else {
            Issue.record("glitch not dropped")
            return
        }
        #expect(d2 == Mass(kilograms: 20))
        // A real jump (someone set the counter forward by 50 t), confirmed by the next reading.
        guard case .rejected? = t.consume(Self.reading(51_120, .kilogram, at: 13)) else {
            Issue.record("jump not rejected")
            return
        }
        guard case .rebaselined(let jump, let after, _, _, _, _)? = t.consume(Self.reading(51_130, .kilogram, at: 14)) else {
            Issue.record("jump not rebaselined")
            return
        }
        #expect(jump == Mass(kilograms: 50_000) && after == Mass(kilograms: 10))
    }

    @Test("property: with random rollovers, resets and outages, counted mass equals what a brute-force replay of the true feed says")
    func bruteForce() {
        var rng = SplitMix64(seed: 11)
        for trial in 0..<200 {
            // A uint32 counter in kg rolling over at 2^32 kg... scaled down: modulus 1,000,000 kg to see many wraps.
            let modulus: Int64 = 1_000_000
            var tracker = TotalizerTracker(.init(modulus: Mass(kilograms: modulus), resettable: true, maxRateTonnesPerHour: 100))
            var counter = Int64(rng.next() % UInt64(modulus))
            var trueFed: Int64 = 0, counted: Int64 = 0
            var time = 0.0
            _ = tracker.consume(Self.reading(Double(counter), .kilogram, at: time))
            var lastWasGood = true
            // Feed after the last good reading is not known yet (the next good reading will count it).
            var fedUntilLastGood: Int64 = 0
            for _ in 0..<300 {
                let dt = 1 + Double(rng.next() % 20)
                time += dt
                // Up to 90 t/h: 25 kg/s (max_rate 100 t/h, so never rejected).
                let fed = Int64(rng.next() % UInt64(25 * dt))
                trueFed += fed
                let roll = rng.next() % 100
                if roll == 10 && lastWasGood && counter > modulus / 5 && counter < modulus / 10 * 9 {
                    // Someone resets the counter right after the last good reading; then it counts this feed.
                    counter = fed
                } else {
                    counter = (counter + fed) % modulus
                }
                if roll < 10 {
                    // An outage: the reading is lost (timeout); the next good one covers it.
                    #expect(tracker.consume(Self.reading(0, .kilogram, at: time, quality: .timeout)) == nil)
                    lastWasGood = false
                    continue
                }
                switch tracker.consume(Self.reading(Double(counter), .kilogram, at: time)) {
                case .delta(let d, _, _, _, _, _)?:
                    counted += d.milligrams / 1_000_000
                    fedUntilLastGood = trueFed
                default: Issue.record("trial \(trial): not a delta at \(time)")
                }
                lastWasGood = true
            }
            #expect(counted == fedUntilLastGood, "trial \(trial)")
        }
    }
}
