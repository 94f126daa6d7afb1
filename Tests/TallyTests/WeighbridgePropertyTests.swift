import Foundation
import KilnTallyCore
import Tally
import Testing

/// Random truck sequences through random indicators, checked against a brute-force reference that recomputes
/// every condition of every poll from the whole trace (no incremental state), and against the traces' truth.
@Suite("Weighbridge tickets: property")
struct WeighbridgePropertyTests {
    /// One random run: an indicator, a configuration, and what its scale showed.
    struct Run {
        var indicator: TestIndicator
        var config: WeighbridgeConfig
        var polls: [Shown]
        /// The weight each stable hold showed, by its polls' times (the truth captures are checked against).
        var holdWeight: [UTCInstant: Int64]

        init(seed: UInt64) {
            var g = SplitMix64(seed: seed)
            func chance(_ p: Double) -> Bool { g.unit() < p }
            func pick<T>(_ items: [T]) -> T { items[Int(g.next() % UInt64(items.count))] }
            func kg(_ range: ClosedRange<Int64>) -> Int64 {
                (range.lowerBound + Int64(g.next() % UInt64(range.upperBound - range.lowerBound + 1))) / 20 * 20
            }

            let mode: WeighbridgeConfig.Mode = chance(0.2) ? .onePass : .twoPass
            let pairing: WeighbridgeConfig.Pairing = pick([.ticketNumber, .vehicleID, .order])
            indicator = TestIndicator(
                stability: pick([.motionBit, .stableBit, .both]),
                ticketNumber: (mode == .twoPass && pairing == .ticketNumber) || chance(0.3),
                vehicle: mode == .onePass || pairing == .vehicleID || chance(0.3),
                rangeBits: chance(0.8), netBit: chance(0.5))
            let spread: (Duration, Int64)? = chance(0.5) ? (pick([.milliseconds(500), .seconds(1), .seconds(2)]), pick([0, 20, 40])) : nil

            // Trucks: loaded 20-40 t, empty 12-16 t; one in ten comes in empty (a pickup).
            let trucks = (0..<Int(1 + g.next() % 5)).map { i in (vehicle: "T\(i)", loaded: kg(20_000...40_000), empty: kg(12_000...16_000),
                                                               pickup: chance(0.1)) }
            var passes: [TruckTrace.Pass] = []
            func pass(_ t: Int, first: Bool) -> TruckTrace.Pass {
                let heavy = first != trucks[t].pickup
                return TruckTrace.Pass(kg: heavy ? trucks[t].loaded : trucks[t].empty, ticket: 100 + UInt64(t),
                                       vehicle: trucks[t].vehicle, settles: !chance(0.1), zeroAfter: !chance(0.1))
            }
            if mode == .onePass {
                passes = trucks.indices.map { pass($0, first: true) }
            } else if pairing == .order {
                passes = trucks.indices.flatMap { [pass($0, first: true), pass($0, first: false)] }
            } else {
                // Interleaved: a truck comes in while others are still inside.
                var waiting = Array(trucks.indices), inside: [Int] = []
                while !waiting.isEmpty || !inside.isEmpty {
                    if !waiting.isEmpty && (inside.isEmpty || chance(0.5)) {
                        inside.append(waiting.removeFirst())
                        passes.append(pass(inside.last!, first: true))
                    } else {
                        passes.append(pass(inside.remove(at: Int(g.next() % UInt64(inside.count))), first: false))
                    }
                }
            }
            // Now and then a car or a loader crosses the scale: lighter than the minimum, no registers.
            for k in passes.indices.reversed() where chance(0.1) {
                passes.insert(TruckTrace.Pass(kg: kg(300...1_000)), at: k)
            }
            var presets: [String: Int64] = [:]
            for t in trucks where chance(0.8) { presets[t.vehicle] = t.empty + pick([0, 0, 60, -60, 30_000]) }
            config = indicator.config(mode: mode, pairing: mode == .twoPass ? pairing : nil, spread: spread,
                                      presets: mode == .onePass ? presets : [:])

            var trace = TruckTrace()
            trace.interval = pick([.milliseconds(250), .milliseconds(500), .seconds(1)])
            trace.hold = pick([.seconds(1), .seconds(2), .seconds(6)])
            var shown = trace.shown(passes, from: at(9, 0, 0), random: &g).polls
            holdWeight = [:]
            for s in shown where s.stable && s.kg > 0 { holdWeight[s.time] = s.kg }
            // Faults: readings that time out, status words not read, an unsynchronized clock, over range blips,
            // pairing registers not read.
            for i in shown.indices {
                if chance(0.03) { shown[i].weightQuality = .timeout }
                if chance(0.03) { shown[i].statusQuality = .commFailure }
                if chance(0.03) { shown[i].clockSynchronized = false }
                if chance(0.02) { shown[i].overRange = true }
                if chance(0.01) { shown[i].underRange = true }
                if chance(0.01) { shown[i].net = true }
                if chance(0.05) { shown[i].ticket = nil }
                if chance(0.05) { shown[i].vehicle = nil }
            }
            polls = shown
        }
    }

    /// An output as the reference can state it.
    struct Fact: Hashable, CustomStringConvertible {
        var kind: String
        var time: UTCInstant
        var ticket: String? = nil
        var revision = 0
        var inbound: Int64? = nil
        var outbound: Int64? = nil
        var gross: Int64? = nil
        var tare: Int64? = nil
        var net: Int64? = nil
        var flags: [Ticket.Flag] = []
        var description: String {
            "\(kind)@\(time) \(ticket ?? "") r\(revision) in=\(inbound.map(String.init) ?? "-") out=\(outbound.map(String.init) ?? "-") "
                + "g=\(gross.map(String.init) ?? "-") t=\(tare.map(String.init) ?? "-") n=\(net.map(String.init) ?? "-") \(flags)"
        }

        init(kind: String, time: UTCInstant) {
            self.kind = kind
            self.time = time
        }

        init(_ output: WeighbridgeOutput) {
            func kg(_ m: Mass?) -> Int64? { m.map { $0.milligrams / 1_000_000 } }
            switch output {
            case .event(let e):
                self.init(kind: e.kind.rawValue, time: e.time)
            case .ticketOpened(let t), .ticketClosed(let t), .ticketRevised(let t):
                self.init(kind: t.status.rawValue, time: t.closedAt ?? t.inbound.time)
                ticket = t.id
                revision = t.revision
                inbound = kg(t.inbound.weight)
                outbound = kg(t.outbound?.weight)
                gross = kg(t.gross)
                tare = kg(t.tare)
                net = kg(t.net)
                flags = t.flags
            }
        }
    }

    /// The rules, applied to each poll from scratch over the whole trace.
    static func reference(_ run: Run) throws -> [Fact] {
        let polls = run.polls, config = run.config, ind = run.indicator
        let zeroBand: Int64 = 40, minKg = config.minWeight.milligrams / 1_000_000
        let good = { (i: Int) in polls[i].weightQuality == .good }
        // Pass of each poll: a pass starts at a good weight above the zero band and ends at a good weight at or below.
        var passOf = [Int?](repeating: nil, count: polls.count)
        var endedBy: [Int: Int] = [:]  // the poll that ends a pass → the pass
        var passes = 0
        var current: Int?
        for i in polls.indices where good(i) || current != nil {
            if good(i) && polls[i].kg <= zeroBand {
                if let c = current { endedBy[i] = c }
                current = nil
            } else {
                if current == nil { passes += 1; current = passes }
                passOf[i] = current
            }
        }
        let hasBits = ind.stability != .none || ind.rangeBits || ind.netBit
        func spreadHolds(_ i: Int) -> Bool {
            guard let check = config.spreadCheck else { return true }
            let start = polls[i].time.nanosecondsSinceEpoch - nanoseconds(check.window)
            var j = i
            while j > 0 && passOf[j - 1] == passOf[i] && good(j - 1) && polls[j].time.nanosecondsSinceEpoch > start { j -= 1 }
            guard polls[j].time.nanosecondsSinceEpoch <= start else { return false }
            let kgs = polls[j...i].map(\.kg)
            return Mass(kilograms: kgs.max()! - kgs.min()!) <= check.tolerance
        }
        let pairing = config.resolvedPairing(try config.resolveChannels(devices: [ind.device: ind.roles]).get())
        func capturable(_ i: Int) -> Bool {
            let s = polls[i]
            if s.kg <= minKg || (hasBits && s.statusQuality != .good) { return false }
            if !s.stable || (ind.rangeBits && (s.overRange || s.underRange)) || (ind.netBit && s.net) { return false }
            if !spreadHolds(i) { return false }
            if config.mode == .onePass || pairing == .vehicleID { return s.vehicle != nil }
            if pairing == .ticketNumber { return s.ticket != nil }
            return true
        }

        var facts: [Fact] = []
        struct Open { var id: String; var key: String?; var kg: Int64; var flags: Set<Ticket.Flag>; var pass: Int }
        var open: [Open] = []
        var number = 0
        var captured: [Int: Int64] = [:], overRange: Set<Int> = [], notZeroed: Set<Int> = []
        for i in polls.indices {
            let s = polls[i]
            guard good(i) else { continue }
            guard let p = passOf[i] else {
                // The poll that ends a pass: missed if the pass went above the minimum without a capture.
                if let q = endedBy[i], captured[q] == nil,
                   polls.indices.filter({ passOf[$0] == q && good($0) }).map({ polls[$0].kg }).max()! > minKg {
                    facts.append(Fact(kind: "weighing_missed", time: s.time))
                }
                continue
            }
            if ind.rangeBits && s.statusQuality == .good && s.overRange && !overRange.contains(p) {
                overRange.insert(p)
                if let k = open.firstIndex(where: { $0.pass == p }) { open[k].flags.insert(.overRange) }
                facts.append(Fact(kind: "weighbridge_over_range", time: s.time))
            }
            guard capturable(i) else { continue }
            if let c = captured[p] {
                if abs(s.kg - c) > zeroBand && !notZeroed.contains(p) {
                    notZeroed.insert(p)
                    facts.append(Fact(kind: "scale_not_zeroed", time: s.time))
                }
                continue
            }
            captured[p] = s.kg
            var flags: Set<Ticket.Flag> = []
            if overRange.contains(p) { flags.insert(.overRange) }
            if !s.clockSynchronized { flags.insert(.clockUnsynchronized) }
            if config.mode == .onePass {
                guard let preset = config.presetTare(for: s.vehicle!), Mass(kilograms: s.kg) > preset else {
                    facts.append(Fact(kind: "weighing_rejected", time: s.time))
                    continue
                }
                number += 1
                var f = Fact(kind: "closed", time: s.time)
                f.ticket = "wb1-\(number)"
                f.revision = 1
                f.inbound = s.kg
                f.gross = s.kg
                f.tare = preset.milligrams / 1_000_000
                f.net = s.kg - f.tare!
                f.flags = (flags.union([.presetTare])).sorted()
                facts.append(f)
                continue
            }
            let key: String? = switch pairing {
            case .ticketNumber: s.ticket.map { String($0) }
            case .vehicleID: s.vehicle
            case .order: nil
            }
            if let k = open.firstIndex(where: { pairing == .order || $0.key == key }) {
                let o = open.remove(at: k)
                var f = Fact(kind: "closed", time: s.time)
                f.ticket = o.id
                f.revision = 2
                f.inbound = o.kg
                f.outbound = s.kg
                f.gross = max(o.kg, s.kg)
                f.tare = min(o.kg, s.kg)
                f.net = f.gross! - f.tare!
                f.flags = o.flags.union(flags).sorted()
                facts.append(f)
            } else {
                number += 1
                open.append(Open(id: "wb1-\(number)", key: key, kg: s.kg, flags: flags, pass: p))
                var f = Fact(kind: "open", time: s.time)
                f.ticket = "wb1-\(number)"
                f.revision = 1
                f.inbound = s.kg
                f.flags = flags.sorted()
                facts.append(f)
            }
        }
        return facts
    }

    @Test("random truck sequences: the tally equals the brute-force reference, checkpoints included", arguments: 0..<150)
    func matchesReference(seed: Int) throws {
        let run = Run(seed: UInt64(seed))
        var tally = try run.indicator.tally(run.config)
        var outputs: [WeighbridgeOutput] = []
        var g = SplitMix64(seed: UInt64(seed) &+ 1_000)
        let cut = Int(g.next() % UInt64(run.polls.count))
        // Fed in chunks of up to four polls, with a checkpoint (encode, decode) at a random poll.
        var i = 0
        while i < run.polls.count {
            if i >= cut && i < cut + 4 {
                tally = try JSONDecoder().decode(WeighbridgeTally.self, from: try JSONEncoder().encode(tally))
            }
            let n = min(Int(1 + g.next() % 4), run.polls.count - i)
            outputs += tally.consume(run.polls[i..<(i + n)].flatMap(run.indicator.poll))
            i += n
        }
        let facts = outputs.map(Fact.init)
        let expected = try Self.reference(run)
        #expect(facts == expected, "seed \(seed): \(run.config.mode) \(tally.pairing) \(run.indicator.stability)")

        // Truth: every captured weight is the exact weight of a stable hold, and tickets add up.
        for o in outputs {
            switch o {
            case .ticketOpened(let t), .ticketClosed(let t), .ticketRevised(let t):
                for w in [t.inbound] + (t.outbound.map { [$0] } ?? []) {
                    #expect(run.holdWeight[w.time].map { Mass(kilograms: $0) } == w.weight, "seed \(seed)")
                }
                if t.status == .closed { #expect(t.gross! - t.tare! == t.net! && t.net! >= .zero) }
            case .event:
                break
            }
        }
    }
}

extension WeighbridgePropertyTests {
    @Test("the random runs reach every outcome the reference knows")
    func runsCoverEveryOutcome() throws {
        var counts: [String: Int] = [:]
        var modes: Set<String> = []
        for seed in 0..<150 {
            let run = Run(seed: UInt64(seed))
            modes.insert("\(run.config.mode.rawValue)/\(run.config.pairing?.rawValue ?? "-")/\(run.indicator.stability)")
            let facts = try Self.reference(run)
            for f in facts { counts[f.kind, default: 0] += 1 }
            for f in facts where f.kind == "closed" && f.inbound! < (f.outbound ?? 0) { counts["dispatched", default: 0] += 1 }
            for f in facts where !f.flags.isEmpty { counts["flagged", default: 0] += 1 }
            counts["light", default: 0] += run.polls.contains { $0.kg > 40 && $0.kg <= 1_000 && $0.stable } ? 1 : 0
        }
        #expect(counts["light", default: 0] >= 3, "\(counts)")
        for kind in ["open", "closed", "dispatched", "flagged", "weighing_missed", "weighing_rejected", "scale_not_zeroed",
                     "weighbridge_over_range"] {
            #expect(counts[kind, default: 0] >= 3, "\(kind): \(counts)")
        }
        #expect(modes.count >= 10, "\(modes)")
    }
}
