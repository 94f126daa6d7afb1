import KilnTallyCore
import Tally
import Testing

// Test support for the weighbridge suites: an indicator that turns what a scale shows into the readings of one
// poll, and a generator of truck traces shaped like the simulator's `WeighbridgeModel` (ramp up with motion and
// noise, settle, stable hold at the exact weight, ramp down, zero).

/// 2026-11-23 `h:m:s` UTC.
func at(_ h: Int64, _ m: Int64, _ s: Int64, ms: Int64 = 0) -> UTCInstant {
    UTCInstant(nanosecondsSinceEpoch: (1_795_392_000 + h * 3600 + m * 60 + s) * 1_000_000_000 + ms * 1_000_000)
}

/// What the scale shows at one poll.
struct Shown: Sendable, Hashable {
    var time: UTCInstant
    var kg: Int64
    var stable: Bool
    var ticket: UInt64? = nil
    var vehicle: String? = nil
    var material: String? = nil
    var overRange = false
    var underRange = false
    var net = false
    /// The weight reading's quality.
    var weightQuality: Quality = .good
    /// The status bits' quality.
    var statusQuality: Quality = .good
    var clockSynchronized = true
}

/// A test weighbridge indicator: its channels and roles, and the readings of one poll.
struct TestIndicator: Sendable {
    /// How the indicator says "stable".
    enum Stability: String, Sendable, CaseIterable {
        /// A motion bit, true while unstable (Flintec FT-112 status B2).
        case motionBit
        /// A stable bit, true while stable (Dini Argeo DGT4X status b1).
        case stableBit
        /// Both bits.
        case both
        /// Neither: the software spread check alone (Rinstrum C530 as profiled).
        case none
    }

    var device: DeviceID = "wb1"
    var stability: Stability = .motionBit
    var ticketNumber = false
    var vehicle = false
    var material = false
    var rangeBits = true
    var netBit = true
    /// kg.
    var zeroBand: Double = 40

    var roles: [ChannelID: ChannelRole?] {
        var r: [ChannelID: ChannelRole?] = ["weight": .weight(zeroBand: zeroBand), "heartbeat": nil]
        if stability == .motionBit || stability == .both { r["unstable"] = .motion }
        if stability == .stableBit || stability == .both { r["stable"] = .stable }
        if rangeBits {
            r["over"] = .overRange
            r["under"] = .underRange
        }
        if netBit { r["net_mode"] = .net }
        if ticketNumber { r["ticket_no"] = .ticketNumber }
        if vehicle { r["plate"] = .vehicleID }
        if material { r["waste_code"] = .some(nil) }  // a channel without a role
        return r
    }

    func config(name: String = "wb1", mode: WeighbridgeConfig.Mode = .twoPass, pairing: WeighbridgeConfig.Pairing? = nil,
                minWeight: Int64 = 1_000, spread: (Duration, Int64)? = nil,
                presets: [String: Int64] = [:]) -> WeighbridgeConfig {
        WeighbridgeConfig(
            name: name, device: device, mode: mode, pairing: pairing, minWeight: Mass(kilograms: minWeight),
            spreadCheck: spread.map { .init(window: $0.0, tolerance: Mass(kilograms: $0.1)) },
            defaultMaterial: "msw", materialChannel: material ? "waste_code" : nil,
            presetTares: presets.map { .init(vehicle: $0.key, tare: Mass(kilograms: $0.value)) })
    }

    func tally(_ config: WeighbridgeConfig) throws -> WeighbridgeTally {
        try WeighbridgeTally(config: config, devices: [device: roles])
    }

    /// The readings of one poll, in register order (weight, status word bits, heartbeat, registers after).
    func poll(_ s: Shown) -> [Reading] {
        func reading(_ channel: ChannelID, _ value: ReadingValue, _ unit: Unit? = nil, _ quality: Quality = .good,
                     raw: [UInt16]) -> Reading {
            Reading(device: device, channel: channel, time: s.time, value: quality == .good ? value : .none,
                    unit: unit, quality: quality, clockSynchronized: s.clockSynchronized, raw: quality == .good ? raw : [])
        }
        func bit(_ channel: ChannelID, _ b: Bool) -> Reading {
            reading(channel, .bool(b), nil, s.statusQuality, raw: [b ? 1 : 0])
        }
        let word = UInt32(bitPattern: Int32(truncatingIfNeeded: s.kg))
        var out = [reading("weight", .int(s.kg), .kilogram, s.weightQuality,
                           raw: [UInt16(word >> 16), UInt16(word & 0xFFFF)])]
        if stability == .motionBit || stability == .both { out.append(bit("unstable", !s.stable)) }
        if stability == .stableBit || stability == .both { out.append(bit("stable", s.stable)) }
        if rangeBits {
            out.append(bit("over", s.overRange))
            out.append(bit("under", s.underRange))
        }
        if netBit { out.append(bit("net_mode", s.net)) }
        out.append(reading("heartbeat", .uint(UInt64(s.time.nanosecondsSinceEpoch / 100_000_000) & 0xFFFF), .count, raw: []))
        if ticketNumber {
            out.append(s.ticket.map { reading("ticket_no", .uint($0), raw: [UInt16($0 >> 16), UInt16($0 & 0xFFFF)]) }
                       ?? reading("ticket_no", .none, nil, .timeout, raw: []))
        }
        if vehicle { out.append(reading("plate", .string(s.vehicle.map { $0 + "\u{0}\u{0}" } ?? "        "), raw: [])) }
        if material { out.append(reading("waste_code", .string(s.material ?? ""), raw: [])) }
        return out
    }
}

/// A generator of truck traces like the simulator's: per pass, `gap` of empty scale, a ramp up with motion and
/// noise, a settle with motion and less noise, a stable hold at the exact weight (unless the truck leaves before
/// settling), a ramp down with motion, all sampled every `interval`.
struct TruckTrace {
    struct Pass: Sendable, Hashable {
        var kg: Int64
        var ticket: UInt64? = nil
        var vehicle: String? = nil
        var material: String? = nil
        /// false: the truck drives off after the settle phase, never stable.
        var settles = true
        /// false: the next truck drives on before this one's ramp down reaches zero (no empty poll between).
        var zeroAfter = true
    }

    var interval: Duration = .milliseconds(500)
    var gap: Duration = .seconds(2)
    var rampUp: Duration = .seconds(4)
    var settle: Duration = .seconds(1)
    var hold: Duration = .seconds(6)
    var rampDown: Duration = .seconds(3)
    var noiseKg: Int64 = 150
    var divisionKg: Int64 = 20

    /// What the scale shows at each poll from `start`, and the time each pass's stable hold starts (nil when it
    /// never settles).
    func shown(_ passes: [Pass], from start: UTCInstant, random: inout SplitMix64) -> (polls: [Shown], stableFrom: [UTCInstant?]) {
        var polls: [Shown] = []
        var stableFrom: [UTCInstant?] = []
        var t = start
        let step = nanoseconds(interval)
        func phase(_ length: Duration, _ body: (Double) -> Shown) {
            let n = nanoseconds(length) / step
            for k in 0..<n {
                polls.append(body(Double(k) / Double(n)))
                t = UTCInstant(nanosecondsSinceEpoch: t.nanosecondsSinceEpoch + step)
            }
        }
        func noisy(_ kg: Double, _ noise: Int64) -> Int64 {
            let raw = kg + Double(Int64(random.next() % UInt64(2 * noise + 1)) - noise)
            return max(0, Int64((raw / Double(divisionKg)).rounded()) * divisionKg)
        }
        var previousZero = true
        for pass in passes {
            let target = Double(pass.kg)
            func show(_ kg: Int64, _ stable: Bool) -> Shown {
                Shown(time: t, kg: kg, stable: stable, ticket: pass.ticket, vehicle: pass.vehicle, material: pass.material)
            }
            // A truck that drives on before the previous one has left never lets the scale reach its zero band.
            let floor: Int64 = previousZero ? 0 : 100
            if previousZero { phase(gap) { _ in Shown(time: t, kg: 0, stable: true) } }
            phase(rampUp) { f in show(max(noisy(target * f, noiseKg), floor), false) }
            phase(settle) { _ in show(noisy(target, noiseKg / 3), false) }
            if pass.settles {
                stableFrom.append(t)
                phase(hold) { _ in show(pass.kg, true) }
            } else {
                stableFrom.append(nil)
            }
            // A truck followed directly by the next stops its ramp down at half weight.
            phase(pass.zeroAfter ? rampDown : rampDown / 2) { f in show(max(noisy(target * (1 - f), noiseKg), 100), false) }
            previousZero = pass.zeroAfter
        }
        phase(gap) { _ in Shown(time: t, kg: 0, stable: true) }
        return (polls, stableFrom)
    }
}

func nanoseconds(_ d: Duration) -> Int64 {
    let (s, a) = d.components
    return s * 1_000_000_000 + a / 1_000_000_000
}

/// The outputs sorted by kind, for assertions.
extension Array where Element == WeighbridgeOutput {
    var opened: [Ticket] { compactMap { if case .ticketOpened(let t) = $0 { t } else { nil } } }
    var closed: [Ticket] { compactMap { if case .ticketClosed(let t) = $0 { t } else { nil } } }
    var revised: [Ticket] { compactMap { if case .ticketRevised(let t) = $0 { t } else { nil } } }
    var events: [Event] { compactMap { if case .event(let e) = $0 { e } else { nil } } }
}

extension WeighbridgeTally {
    /// Feeds polls one at a time, collecting every output.
    mutating func feed(_ polls: [Shown], _ indicator: TestIndicator) -> [WeighbridgeOutput] {
        polls.flatMap { consume(indicator.poll($0)) }
    }
}

@Suite("Truck trace generator")
struct WeighbridgeTraceTests {
    @Test func layoutMatchesTheSimulatorsTruckModel() {
        var random = SplitMix64(seed: 7)
        let trace = TruckTrace()
        let (polls, stableFrom) = trace.shown(
            [.init(kg: 31_480), .init(kg: 28_000, settles: false, zeroAfter: false), .init(kg: 12_260)],
            from: at(9, 0, 0), random: &random)
        // Pass 1: gap 2 s, ramp 4 s, settle 1 s, hold 6 s, ramp down 3 s = 16 s; pass 2 (never settles, ramp down cut
        // to 1.5 s): gap 2 s + 4 + 1 + 1.5 = 8.5 s; pass 3 without a gap: 4 + 1 + 6 + 3 = 14 s; a final 2 s gap.
        #expect(polls.count == (16 + 8 + 14 + 2) * 2 + 1)
        #expect(stableFrom == [at(9, 0, 7), nil, at(9, 0, 29, ms: 500)])
        #expect(zip(polls, polls.dropFirst()).allSatisfy { $1.time.nanosecondsSinceEpoch - $0.time.nanosecondsSinceEpoch == 500_000_000 })
        let stable = polls.filter(\.stable).filter { $0.kg > 0 }
        #expect(stable.count == 24 && stable.prefix(12).allSatisfy { $0.kg == 31_480 } && stable.suffix(12).allSatisfy { $0.kg == 12_260 })
        #expect(polls.allSatisfy { $0.kg % 20 == 0 && $0.kg >= 0 })
        // Between pass 2 and pass 3 the scale never shows empty.
        let between = polls.filter { $0.time >= at(9, 0, 23) && $0.time < at(9, 0, 29, ms: 500) }
        #expect(!between.isEmpty && between.allSatisfy { $0.kg >= 100 })
    }
}
