import Foundation
import KilnTallyCore
import Tally
import Testing

/// A new configuration reaches the tally as an input and takes effect at the next shift boundary: the shift in
/// progress is reported as configured when it began, the next ones as newly configured, and every report names the
/// config hash in force during its shift.
@Suite("Tally reconfiguration")
struct TallyReconfigurationTests {
    /// 2026-11-23 00:00 in Asia/Shanghai (+08:00).
    static let midnight: Int64 = 1_795_363_200

    static func stream(_ name: String, device: DeviceID) -> TallyEngine.StreamSetup {
        let config = StreamConfig(name: name, material: name, feedPoint: .calciner, device: device, totalizer: "total",
                                  rate: "rate", maxGap: .seconds(120), runThresholdTonnesPerHour: 0.5,
                                  disagreementTolerance: 0.05)
        let source = StreamSource(device: device, totalizer: "total",
                                  totalizerParameters: .init(modulus: nil, resettable: false, maxRateTonnesPerHour: 60),
                                  rate: "rate", maxGap: .seconds(120), runThresholdTonnesPerHour: 0.5)
        return .init(config, source)
    }

    static func setup(_ hash: String, streams: [TallyEngine.StreamSetup], calendar: ShiftCalendar = .standard) -> TallyEngine.Setup {
        TallyEngine.Setup(site: "plant-a", node: "kiln2", configHash: hash, calendar: calendar, grace: .seconds(300),
                          streams: streams, weighbridges: [])
    }

    static func dayNight(_ day: String, _ night: String) throws -> ShiftCalendar {
        try ShiftCalendar(timeZone: "Asia/Shanghai", shifts: [
            .init(name: "D", start: TimeOfDay(day)!), .init(name: "N", start: TimeOfDay(night)!),
        ])
    }

    /// Belts `belt1` and `belt2`, each 12 t/h (0.2 t a minute) from 500 t, a reading a minute from `from` to `to`
    /// (seconds after midnight), then ticks until `until`; `configs` go in at their second (before that minute's
    /// readings).
    static func inputs(from: Int64, to: Int64, until: Int64, configs: [(Int64, TallyEngine.Setup)]) -> [TallyInput] {
        var out: [TallyInput] = []
        var seq: UInt64 = 0
        func next() -> UInt64 { seq += 1; return seq }
        var pending = configs
        var t = from
        while t <= until {
            let time = UTCInstant(secondsSinceEpoch: midnight + t)
            while let (at, setup) = pending.first, at <= t {
                out.append(.configure(sequence: next(), time: UTCInstant(secondsSinceEpoch: midnight + at), setup: setup))
                pending.removeFirst()
            }
            if t <= to {
                for belt in ["belt1", "belt2"] {
                    let tonnes = 500 + Double(t - from) / 60 * 0.2
                    out.append(.reading(sequence: next(), Reading(device: DeviceID(belt), channel: "rate", time: time,
                                                                  value: .double(12), unit: .tonnePerHour)))
                    out.append(.reading(sequence: next(), Reading(device: DeviceID(belt), channel: "total", time: time,
                                                                  value: .double(tonnes), unit: .tonne)))
                }
            } else {
                out.append(.tick(sequence: next(), time: time))
            }
            t += 60
        }
        return out
    }

    static func reports(_ outputs: [TallyOutput]) throws -> [[String: JSONValue]] {
        try outputs.compactMap { o in
            guard case .record(.report, _, _, let json) = o else { return nil }
            return try CanonicalJSON.parse(json).objectValue
        }
    }

    static func streams(_ report: [String: JSONValue]) -> [String: [String: JSONValue]] {
        var out: [String: [String: JSONValue]] = [:]
        for s in report["streams"]?.arrayValue ?? [] {
            if let o = s.objectValue, let name = o["name"]?.stringValue { out[name] = o }
        }
        return out
    }

    static func run(_ first: TallyEngine.Setup, _ inputs: [TallyInput]) -> (engine: TallyEngine, outputs: [TallyOutput]) {
        var engine = TallyEngine(setup: first)
        let outputs = inputs.flatMap { engine.consume($0) }
        return (engine, outputs)
    }

    @Test("a stream added during shift B reports from shift C on, complete, with its start value interpolated; B names the old hash")
    func streamAdded() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        let two = Self.setup("h2", streams: [Self.stream("msw", device: "belt1"), Self.stream("rdf", device: "belt2")])
        let (_, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 24 * 3600 + 600, until: 24 * 3600 + 1200,
                                                     configs: [(12 * 3600 + 30, two)]))
        let reports = try Self.reports(outputs)
        #expect(reports.map { $0["shift"]?.stringValue } == ["2026-11-23/B", "2026-11-23/C"])
        let b = reports[0], c = reports[1]
        #expect(b["config_hash"] == "h1" && c["config_hash"] == "h2")
        #expect(Self.streams(b).keys.sorted() == ["msw"])
        #expect(Self.streams(c).keys.sorted() == ["msw", "rdf"])
        let rdf = try #require(Self.streams(c)["rdf"])
        #expect(rdf["fed_kg"] == "96000.000")
        #expect(rdf["coverage_pct"] == "100.00")
        #expect(rdf["flag"] == "N")
        // 500 t at 08:00, 0.2 t a minute: 16:00 is 480 minutes later.
        #expect(rdf["totalizer_start_kg"] == "596000.000")
        #expect(Self.streams(c)["msw"]?["fed_kg"] == "96000.000")
        // A reading exactly at the boundary is the next shift's start value (for the stream that was there all along).
        #expect(Self.streams(c)["msw"]?["totalizer_start_kg"] == "596000.000")
        #expect(Self.streams(b)["msw"]?["totalizer_end_kg"] == "596000.000")
        let events = outputs.compactMap { o -> Event? in if case .event(let e) = o { e } else { nil } }
        #expect(events.contains { $0.kind == .tallyConfigChanged && $0.attributes["effective"] == "2026-11-23T08:00:00.000Z" })
    }

    @Test("a stream removed during shift B is still in B's report, not in C's")
    func streamRemoved() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1"), Self.stream("rdf", device: "belt2")])
        let two = Self.setup("h2", streams: [Self.stream("msw", device: "belt1")])
        let (engine, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 24 * 3600 + 600, until: 24 * 3600 + 1200,
                                                          configs: [(9 * 3600, two)]))
        let reports = try Self.reports(outputs)
        #expect(reports.map { $0["shift"]?.stringValue } == ["2026-11-23/B", "2026-11-23/C"])
        #expect(Self.streams(reports[0]).keys.sorted() == ["msw", "rdf"])
        #expect(Self.streams(reports[0])["rdf"]?["fed_kg"] == "96000.000")
        #expect(Self.streams(reports[1]).keys.sorted() == ["msw"])
        // The retired stream's slot is gone from the state once its last shift closed.
        #expect(engine.state.streams.map(\.name) == ["msw"])
        #expect(engine.state.eras.count == 1 && engine.state.eras[0].setup.configHash == "h2")
    }

    @Test("a changed stream: the old definition reports until the boundary, the new one after it")
    func streamChanged() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        var changed = Self.stream("msw", device: "belt2")  // the same stream moved to the other belt's scale
        changed.config.material = "msw-wet"
        let two = Self.setup("h2", streams: [changed])
        let (_, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 24 * 3600 + 600, until: 24 * 3600 + 1200,
                                                     configs: [(10 * 3600, two)]))
        let reports = try Self.reports(outputs)
        let b = try #require(Self.streams(reports[0])["msw"]), c = try #require(Self.streams(reports[1])["msw"])
        #expect(b["device"] == "belt1" && b["material"] == "msw")
        #expect(c["device"] == "belt2" && c["material"] == "msw-wet")
        #expect(b["fed_kg"] == "96000.000" && c["fed_kg"] == "96000.000")
        #expect(reports[1]["balance"]?.arrayValue?.first?.objectValue?["material"] == "msw-wet")
    }

    @Test("8-hour shifts to 12-hour D/N from 08:00, staged in B: D is under way at B's end, so it runs 16:00-20:00 named for its start")
    func calendarChangeOffGrid() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        let two = Self.setup("h2", streams: [Self.stream("msw", device: "belt1")], calendar: try Self.dayNight("08:00", "20:00"))
        // Staged in B (08:00-16:00): from 16:00 the 12-hour calendar governs; its shift D (08:00-20:00) is under
        // way, so the first shift is D from 16:00 to 20:00, named for its start.
        let (_, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 32 * 3600 + 600, until: 32 * 3600 + 1200,
                                                     configs: [(9 * 3600, two)]))
        let reports = try Self.reports(outputs)
        #expect(reports.map { $0["shift"]?.stringValue } == ["2026-11-23/B", "2026-11-23/D-160000", "2026-11-23/N"])
        #expect(reports.map { $0["length_s"] } == [.integer(28_800), .integer(14_400), .integer(43_200)])
        #expect(reports.map { $0["config_hash"] } == ["h1", "h2", "h2"])
        #expect(reports[1]["start_local"] == "2026-11-23T16:00:00.000+08:00")
        #expect(reports[1]["end_local"] == "2026-11-23T20:00:00.000+08:00")
        #expect(reports.map { Self.streams($0)["msw"]?["fed_kg"] } == ["96000.000", "48000.000", "144000.000"])
        #expect(reports.allSatisfy { Self.streams($0)["msw"]?["coverage_pct"] == "100.00" })
    }

    @Test("a calendar whose boundary is the old one's: no truncation, the new names from the boundary on")
    func calendarChangeOnGrid() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        let two = Self.setup("h2", streams: [Self.stream("msw", device: "belt1")], calendar: try Self.dayNight("04:00", "16:00"))
        let (_, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 28 * 3600 + 600, until: 28 * 3600 + 1200,
                                                     configs: [(15 * 3600, two)]))
        let reports = try Self.reports(outputs)
        #expect(reports.map { $0["shift"]?.stringValue } == ["2026-11-23/B", "2026-11-23/N"])
        #expect(reports.map { Self.streams($0)["msw"]?["fed_kg"] } == ["96000.000", "144000.000"])
    }

    @Test("a second change before the boundary supersedes the first; the same configuration again changes nothing")
    func superseded() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        let two = Self.setup("h2", streams: [Self.stream("msw", device: "belt1"), Self.stream("rdf", device: "belt2")])
        let three = Self.setup("h3", streams: [Self.stream("msw", device: "belt1")], calendar: try Self.dayNight("08:00", "20:00"))
        let (engine, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 20 * 3600 + 600, until: 20 * 3600 + 1200,
                                                          configs: [(9 * 3600, two), (10 * 3600, three), (11 * 3600, three)]))
        let reports = try Self.reports(outputs)
        #expect(reports.map { $0["shift"]?.stringValue } == ["2026-11-23/B", "2026-11-23/D-160000"])
        #expect(reports.map { $0["config_hash"] } == ["h1", "h3"])
        #expect(Self.streams(reports[1]).keys.sorted() == ["msw"])
        #expect(engine.state.streams.map(\.name) == ["msw"])
        let changes = outputs.filter { if case .event(let e) = $0 { e.kind == .tallyConfigChanged } else { false } }
        #expect(changes.count == 2)
    }

    @Test("a configuration before the first reading is in force at once")
    func beforeFirstInput() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        let two = Self.setup("h2", streams: [Self.stream("rdf", device: "belt2")])
        let (_, outputs) = Self.run(one, Self.inputs(from: 8 * 3600, to: 16 * 3600 + 600, until: 16 * 3600 + 1200,
                                                     configs: [(8 * 3600 - 5, two)]))
        let reports = try Self.reports(outputs)
        #expect(reports.map { $0["config_hash"] } == ["h2"])
        #expect(Self.streams(reports[0]).keys.sorted() == ["rdf"])
    }

    @Test("a checkpoint at any input of a run with two changes gives exactly the records of an uninterrupted run")
    func checkpointAcrossChanges() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        let two = Self.setup("h2", streams: [Self.stream("msw", device: "belt1"), Self.stream("rdf", device: "belt2")],
                             calendar: try Self.dayNight("06:00", "18:00"))
        let three = Self.setup("h3", streams: [Self.stream("rdf", device: "belt2")], calendar: .standard)
        let inputs = Self.inputs(from: 8 * 3600, to: 40 * 3600, until: 41 * 3600, configs: [(9 * 3600, two), (20 * 3600, three)])
        var reference = TallyEngine(setup: one)
        let expected = inputs.flatMap { reference.consume($0) }
        #expect(try Self.reports(expected).map { $0["shift"]?.stringValue }
                == ["2026-11-23/B", "2026-11-23/D-160000", "2026-11-23/N", "2026-11-24/A-060000", "2026-11-24/B"])
        var rng = SplitMix64(seed: 5)
        for _ in 0..<10 {
            let cut = Int(rng.next() % UInt64(inputs.count))
            var engine = TallyEngine(setup: one)
            var got = inputs[..<cut].flatMap { engine.consume($0) }
            let checkpoint = try JSONEncoder().encode(engine.state)
            // Restarted with the latest configuration: the checkpoint's setups rule, not the argument.
            var restored = TallyEngine(setup: three, state: try JSONDecoder().decode(TallyEngine.State.self, from: checkpoint))
            got += inputs[max(0, cut - 40)...].flatMap { restored.consume($0) }
            #expect(got == expected, "cut at \(cut)")
        }
    }

    @Test("a weighbridge's new default material applies to tickets closed after the boundary; its open ticket stays open")
    func weighbridgeChanged() throws {
        var one = Self.setup("h1", streams: [])
        let channels = WeighbridgeChannels(weight: "weight", zeroBand: 40, motion: "unstable")
        one.weighbridges = [.init(WeighbridgeConfig(name: "wb1", device: "wb", pairing: .order, defaultMaterial: "msw"), channels)]
        var two = one
        two.configHash = "h2"
        two.weighbridges = [.init(WeighbridgeConfig(name: "wb1", device: "wb", pairing: .order, defaultMaterial: "sludge"), channels)]
        var engine = TallyEngine(setup: one)
        var seq: UInt64 = 0
        var outputs: [TallyOutput] = []
        func poll(_ seconds: Int64, kg: Int64, moving: Bool = false) {
            let t = UTCInstant(secondsSinceEpoch: Self.midnight + seconds)
            for (channel, value) in [("weight", ReadingValue.int(kg)), ("unstable", .bool(moving))] {
                seq += 1
                outputs += engine.consume(.reading(sequence: seq, Reading(device: "wb", channel: ChannelID(channel), time: t,
                                                                         value: value, unit: channel == "weight" ? .kilogram : nil)))
            }
        }
        // Truck 1 in and out in B; truck 2 in during B, out during C.
        for (at, kg) in [(9 * 3600, 30_000), (9 * 3600 + 60, 10_000), (15 * 3600, 28_000), (16 * 3600 + 900, 11_000)] {
            poll(Int64(at) - 10, kg: 0)
            poll(Int64(at), kg: Int64(kg))
            poll(Int64(at) + 5, kg: Int64(kg))
            poll(Int64(at) + 10, kg: 0)
            if at == 9 * 3600 + 60 {
                seq += 1
                outputs += engine.consume(.configure(sequence: seq, time: UTCInstant(secondsSinceEpoch: Self.midnight + 10 * 3600), setup: two))
            }
        }
        let tickets = try outputs.compactMap { o -> [String: JSONValue]? in
            guard case .record(.ticket, _, _, let json) = o else { return nil }
            return try CanonicalJSON.parse(json).objectValue
        }
        let closed = tickets.filter { $0["status"] == "closed" }
        #expect(closed.map { $0["net_kg"] } == ["20000.000", "17000.000"])
        #expect(closed.map { $0["config_hash"] } == ["h1", "h2"])
        // The open ticket kept its material from when it was opened; the one opened after the change gets the new.
        #expect(closed.map { $0["material"] } == ["msw", "msw"])
        #expect(engine.state.weighbridges["wb1"]?.config.defaultMaterial == "sludge")
    }

    @Test("the running totals of the open shift: fed so far, coverage of the time elapsed, the receipts; none before the first input")
    func currentShift() throws {
        let one = Self.setup("h1", streams: [Self.stream("msw", device: "belt1")])
        var engine = TallyEngine(setup: one)
        #expect(engine.currentShift() == nil)
        // 08:00 to 12:00 at 12 t/h, in shift B.
        let all = Self.inputs(from: 8 * 3600, to: 16 * 3600 + 600, until: 16 * 3600 + 600, configs: [])
        let noon = UTCInstant(secondsSinceEpoch: Self.midnight + 12 * 3600)
        for input in all where input.time <= noon { _ = engine.consume(input) }
        let current = try #require(engine.currentShift())
        #expect(current["schema"] == "kilntally.shift-current/1")
        #expect(current["shift"] == "2026-11-23/B" && current["id"] == "plant-a/kiln2/2026-11-23/B")
        #expect(current["as_of"] == "2026-11-23T04:00:00.000Z")
        let msw = try #require(current["streams"]?.arrayValue?.first?.objectValue)
        #expect(msw["fed_kg"] == "48000.000")
        #expect(msw["coverage_pct"] == "100.00")
        #expect(current["receipts"] == .array([]))
        // The shift still closes as usual, with the whole shift in its report.
        let outputs = all.filter { $0.time > noon }.flatMap { engine.consume($0) }
        #expect(try Self.reports(outputs).first.map { Self.streams($0)["msw"]?["fed_kg"] } == "96000.000")
    }
}
