import Foundation
import KilnTallyCore
import Tally
import Testing
import TestSupport

/// The engine end to end on recorded inputs: reports per shift (worked example 4 across both DST changes), the
/// chain over everything it seals, revisions when a late reading changes a closed shift, and a checkpoint taken at
/// any input giving exactly the outputs of an uninterrupted run.
@Suite("Tally engine")
struct TallyEngineTests {
    static func berlin() throws -> ShiftCalendar {
        try ShiftCalendar(timeZone: "Europe/Berlin", shifts: [
            .init(name: "A", start: TimeOfDay("00:00")!), .init(name: "B", start: TimeOfDay("08:00")!),
            .init(name: "C", start: TimeOfDay("16:00")!),
        ])
    }

    static func setup(_ calendar: ShiftCalendar, totalizer: Bool = false) -> TallyEngine.Setup {
        let stream = StreamConfig(name: "msw", material: "msw", feedPoint: .calciner, device: "belt1",
                                  totalizer: totalizer ? "total1" : nil, rate: "rate", maxGap: .seconds(120),
                                  runThresholdTonnesPerHour: 0.5, disagreementTolerance: 0.05)
        let source = StreamSource(device: "belt1", totalizer: stream.totalizer,
                                  totalizerParameters: totalizer ? .init(modulus: nil, resettable: false, maxRateTonnesPerHour: 60) : nil,
                                  rate: "rate", maxGap: .seconds(120), runThresholdTonnesPerHour: 0.5)
        return TallyEngine.Setup(site: "plant-a", node: "kiln2", configHash: "0123456789abcdef", calendar: calendar,
                                 grace: .seconds(300), streams: [.init(stream, source)], weighbridges: [])
    }

    /// A constant 12 t/h every minute from `from` to `to` (UTC seconds), then ticks until `until`.
    static func inputs(from: Int64, to: Int64, until: Int64, totalizer: Bool = false) -> [TallyInput] {
        var out: [TallyInput] = []
        var seq: UInt64 = 0
        var t = from
        while t <= to {
            seq += 1
            out.append(.reading(sequence: seq, Reading(device: "belt1", channel: "rate", time: UTCInstant(secondsSinceEpoch: t),
                                                       value: .double(12), unit: .tonnePerHour)))
            if totalizer {
                seq += 1
                // 12 t/h = 0.2 t a minute, from 500 t.
                let tonnes = 500 + Double(t - from) / 60 * 0.2
                out.append(.reading(sequence: seq, Reading(device: "belt1", channel: "total1", time: UTCInstant(secondsSinceEpoch: t),
                                                           value: .double(tonnes), unit: .tonne)))
            }
            t += 60
        }
        while t <= until {
            seq += 1
            out.append(.tick(sequence: seq, time: UTCInstant(secondsSinceEpoch: t)))
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

    @Test("worked example 4: 12 t/h in Berlin, shift 2026-03-29/A lasts 7 h and gets 84 t; 2026-10-25/A lasts 9 h and gets 108 t",
          arguments: [
              // (day's local midnight in UTC, expected seconds, expected kg)
              (Int64(1_774_738_800), Int64(25_200), "84000.000"),  // 2026-03-28T23:00:00Z = 2026-03-29 00:00 CET
              (Int64(1_792_879_200), Int64(32_400), "108000.000"),  // 2026-10-24T22:00:00Z = 2026-10-25 00:00 CEST
          ])
    func daylightSaving(midnight: Int64, seconds: Int64, kg: String) throws {
        var engine = TallyEngine(setup: Self.setup(try Self.berlin()))
        var outputs: [TallyOutput] = []
        for input in Self.inputs(from: midnight, to: midnight + seconds + 3_600, until: midnight + seconds + 7_200) {
            outputs += engine.consume(input)
        }
        let a = try #require(try Self.reports(outputs).first)
        #expect(a["shift"]?.stringValue == (seconds == 25_200 ? "2026-03-29/A" : "2026-10-25/A"))
        #expect(a["length_s"] == .integer(seconds))
        let stream = try #require(a["streams"]?.arrayValue?.first?.objectValue)
        #expect(stream["fed_kg"]?.stringValue == kg)
        #expect(stream["coverage_pct"]?.stringValue == "100.00")
        #expect(stream["rate_avg_tph"]?.stringValue == "12.000")
        #expect(a["flag"]?.stringValue == "N")
        #expect(a["start_local"]?.stringValue?.hasSuffix(seconds == 25_200 ? "+01:00" : "+02:00") == true)
        #expect(a["end_local"]?.stringValue?.hasSuffix(seconds == 25_200 ? "+02:00" : "+01:00") == true)
    }

    @Test("Python (rfc8785 + hashlib) recomputes every hash and link of what the engine sealed")
    func pythonAgrees() async throws {
        var setup = Self.setup(ShiftCalendar.standard, totalizer: true)
        setup.weighbridges = [.init(WeighbridgeConfig(name: "wb1", device: "wb", defaultMaterial: "生活垃圾"),
                               WeighbridgeChannels(weight: "weight", zeroBand: 40, motion: "unstable"))]
        var engine = TallyEngine(setup: setup)
        var records: [[String: JSONValue]] = []
        var seq: UInt64 = 0
        for input in Self.inputs(from: 1_795_363_200, to: 1_795_363_200 + 30_000, until: 1_795_363_200 + 60_000, totalizer: true) {
            for case .record(_, _, _, let json) in engine.consume(input) { records.append(try CanonicalJSON.parse(json).objectValue!) }
            seq = input.sequence
        }
        // A truck, so a ticket with a non-ASCII material is in the chain too.
        for (k, (kg, moving)) in [(0, false), (30_000, true), (31_480, false), (31_480, false), (0, false),
                                  (12_260, false), (12_260, false), (0, false)].enumerated() {
            let t = UTCInstant(secondsSinceEpoch: 1_795_363_200 + 60_001 + Int64(k) * 5)
            for (channel, value) in [("weight", ReadingValue.int(Int64(kg))), ("unstable", .bool(moving))] {
                seq += 1
                for case .record(_, _, _, let json) in engine.consume(.reading(sequence: seq, Reading(
                    device: "wb", channel: ChannelID(channel), time: t, value: value, unit: channel == "weight" ? .kilogram : nil))) {
                    records.append(try CanonicalJSON.parse(json).objectValue!)
                }
            }
        }
        seq += 1
        for case .record(_, _, _, let json) in engine.consume(.tick(sequence: seq, time: UTCInstant(secondsSinceEpoch: 1_795_363_200 + 90_000))) {
            records.append(try CanonicalJSON.parse(json).objectValue!)
        }
        #expect(records.contains { $0["schema"] == "kilntally.ticket/1" } && records.contains { $0["schema"] == "kilntally.shift-report/1" })
        let lines = try records.enumerated().map { n, record -> [UInt8] in
            var w = JSONWriter()
            w.beginObject()
            w.field("seq", n + 1)
            w.field("type", "record")
            w.field("body", try CanonicalJSON.string(.object(record)))
            w.endObject()
            return Array(w.string.utf8)
        }
        let python = try await JCSPeer.run("chain", input: lines)
        #expect(python == records.enumerated().map { "\($0 + 1) chained \($1["hash"]!.stringValue!) ok" })
    }

    @Test("every record is sealed into one chain that the verifier accepts")
    func chain() throws {
        var engine = TallyEngine(setup: Self.setup(try Self.berlin(), totalizer: true))
        var verifier = ChainVerifier()
        var records = 0
        for input in Self.inputs(from: 1_774_738_800, to: 1_774_738_800 + 86_400, until: 1_774_738_800 + 90_000, totalizer: true) {
            for case .record(_, _, _, let json) in engine.consume(input) {
                records += 1
                guard case .chained = verifier.check(json) else {
                    Issue.record("record \(records) does not verify")
                    return
                }
            }
        }
        #expect(records == 3, "three shifts closed in the day")
        #expect(verifier.faults == 0 && verifier.head == engine.state.chainHead)
    }

    @Test("a reading back after an outage across a closed shift's end revises its report (revision 2, chained)")
    func revision() throws {
        var engine = TallyEngine(setup: Self.setup(try Self.berlin(), totalizer: true))
        let midnight: Int64 = 1_795_474_800  // 2026-11-24 00:00 CET
        let end = midnight + 8 * 3600
        var outputs: [TallyOutput] = []
        var seq: UInt64 = 0
        func total(_ t: Int64, _ tonnes: Double) -> TallyInput {
            seq += 1
            return .reading(sequence: seq, Reading(device: "belt1", channel: "total1", time: UTCInstant(secondsSinceEpoch: t),
                                                   value: .double(tonnes), unit: .tonne))
        }
        func tick(_ t: Int64) -> TallyInput {
            seq += 1
            return .tick(sequence: seq, time: UTCInstant(secondsSinceEpoch: t))
        }
        outputs += engine.consume(total(end - 600, 1_000))
        outputs += engine.consume(tick(end + 400))  // grace (300 s) passed: A closes with what it has
        var reports = try Self.reports(outputs)
        #expect(reports.count == 1 && reports[0]["revision"] == .integer(1))
        #expect(reports[0]["streams"]?.arrayValue?.first?.objectValue?["fed_kg"]?.stringValue == "0.000")
        #expect(reports[0]["flag"]?.stringValue == "B")
        // The belt comes back 10 min after the boundary: 2 t over 20 min, half of it in A.
        outputs += engine.consume(total(end + 600, 1_002))
        reports = try Self.reports(outputs)
        #expect(reports.count == 2)
        #expect(reports[1]["shift"] == reports[0]["shift"] && reports[1]["revision"] == .integer(2))
        let revised = try #require(reports[1]["streams"]?.arrayValue?.first?.objectValue)
        #expect(revised["fed_kg"]?.stringValue == "1000.000" && revised["totalizer_end_kg"]?.stringValue == "1001000.000")
    }

    @Test("a checkpoint taken after any input gives exactly the records of an uninterrupted run")
    func checkpointReplay() throws {
        let setup = Self.setup(try Self.berlin(), totalizer: true)
        let inputs = Self.inputs(from: 1_774_738_800, to: 1_774_738_800 + 30_000, until: 1_774_738_800 + 40_000, totalizer: true)
        var reference = TallyEngine(setup: setup)
        let expected = inputs.flatMap { reference.consume($0) }
        var rng = SplitMix64(seed: 21)
        for _ in 0..<8 {
            let cut = Int(rng.next() % UInt64(inputs.count))
            var engine = TallyEngine(setup: setup)
            var got = inputs[..<cut].flatMap { engine.consume($0) }
            // "kill -9": only the checkpoint survives; the engine is rebuilt from it, and the store is replayed from
            // a little before the checkpoint's position (already-consumed inputs are skipped by sequence number).
            let checkpoint = try JSONEncoder().encode(engine.state)
            var restored = TallyEngine(setup: setup, state: try JSONDecoder().decode(TallyEngine.State.self, from: checkpoint))
            got += inputs[max(0, cut - 50)...].flatMap { restored.consume($0) }
            #expect(got == expected, "cut at \(cut)")
        }
    }

    @Test("worked example 6 through the engine: the ticket (net 19,220 kg) counts in the shift containing 09:41:05, and in its balance")
    func ticketInItsShift() throws {
        var setup = Self.setup(ShiftCalendar.standard)  // A/B/C from 00:00, Asia/Shanghai
        setup.weighbridges = [.init(
            WeighbridgeConfig(name: "wb1", device: "wb", pairing: .ticketNumber, defaultMaterial: "msw"),
            WeighbridgeChannels(weight: "weight", zeroBand: 40, motion: "unstable", ticketNumber: "ticket")
        )]
        var engine = TallyEngine(setup: setup)
        // 2026-11-23 00:00 +08:00 = 2026-11-22T16:00:00Z.
        let midnight: Int64 = 1_795_363_200
        var seq: UInt64 = 0
        var outputs: [TallyOutput] = []
        func poll(_ h: Int64, _ m: Int64, _ s: Int64, kg: Int64, moving: Bool, ticket: UInt64) {
            let t = UTCInstant(secondsSinceEpoch: midnight + h * 3600 + m * 60 + s)
            for (channel, value) in [("weight", ReadingValue.int(kg)), ("unstable", .bool(moving)), ("ticket", .uint(ticket))] {
                seq += 1
                outputs += engine.consume(.reading(sequence: seq, Reading(device: "wb", channel: ChannelID(channel), time: t, value: value,
                                                                         unit: channel == "weight" ? .kilogram : nil)))
            }
        }
        poll(9, 12, 30, kg: 0, moving: false, ticket: 7)
        poll(9, 12, 36, kg: 20_000, moving: true, ticket: 7)
        poll(9, 12, 40, kg: 31_480, moving: false, ticket: 7)
        poll(9, 12, 45, kg: 31_480, moving: false, ticket: 7)
        poll(9, 12, 52, kg: 0, moving: false, ticket: 7)
        poll(9, 40, 58, kg: 9_000, moving: true, ticket: 7)
        poll(9, 41, 5, kg: 12_260, moving: false, ticket: 7)
        poll(9, 41, 10, kg: 12_260, moving: false, ticket: 7)
        poll(9, 41, 20, kg: 0, moving: false, ticket: 7)
        seq += 1
        outputs += engine.consume(.tick(sequence: seq, time: UTCInstant(secondsSinceEpoch: midnight + 16 * 3600 + 600)))
        let tickets = try outputs.compactMap { o -> [String: JSONValue]? in
            guard case .record(.ticket, _, _, let json) = o else { return nil }
            return try CanonicalJSON.parse(json).objectValue
        }
        #expect(tickets.map { $0["revision"] } == [.integer(1), .integer(2)])
        let closed = try #require(tickets.last)
        #expect(closed["net_kg"]?.stringValue == "19220.000" && closed["gross_kg"]?.stringValue == "31480.000")
        #expect(closed["shift"]?.stringValue == "2026-11-23/B")
        #expect(closed["closed_at"]?.stringValue == "2026-11-23T01:41:05.000Z")
        let reports = try Self.reports(outputs)
        // The tally starts with its first input (09:12, shift B): no report for the shift before it.
        #expect(reports.map { $0["shift"]?.stringValue } == ["2026-11-23/B"])
        let b = try #require(reports.last)
        #expect(b["receipts"] == .array([.object(["material": "msw", "tickets": 1, "net_kg": "19220.000"])]))
        // A correction stored like a reading: the ticket is voided (revision 3, S) and its closed shift's report
        // is revised without it.
        seq += 1
        let void = Reading(device: TallyEngine.correctionDevice, channel: TallyEngine.correctionChannel,
                           time: UTCInstant(secondsSinceEpoch: midnight + 17 * 3600),
                           value: .string(#"{"action":"void","ticket":"wb1-1","operator":"zhang","reason":"test weighing"}"#))
        let corrected = engine.consume(.reading(sequence: seq, void))
        let records = try corrected.compactMap { o -> [String: JSONValue]? in
            guard case .record(_, _, _, let json) = o else { return nil }
            return try CanonicalJSON.parse(json).objectValue
        }
        #expect(records.map { $0["schema"]?.stringValue } == ["kilntally.ticket/1", "kilntally.shift-report/1"])
        #expect(records[0]["revision"] == .integer(3) && records[0]["status"] == "voided" && records[0]["flag"] == "S")
        #expect(records[0]["corrections"]?.arrayValue?.first?.objectValue?["operator"] == "zhang")
        #expect(records[1]["shift"] == "2026-11-23/B" && records[1]["revision"] == .integer(2))
        #expect(records[1]["receipts"] == .array([]))
        seq += 1
        let unknown = Reading(device: TallyEngine.correctionDevice, channel: TallyEngine.correctionChannel, time: void.time,
                              value: .string(#"{"action":"void","ticket":"wb1-9","operator":"zhang","reason":"x"}"#))
        #expect(engine.consume(.reading(sequence: seq, unknown)).allSatisfy { if case .event = $0 { true } else { false } })

        // No stock: the imbalance is the residual received − fed, beyond the 2 t tolerance: an alarm.
        #expect(b["balance"] == .array([.object(["material": "msw", "received_kg": "19220.000", "fed_kg": "0.000",
                                                 "imbalance_kg": "19220.000", "exceeded": true])]))
        #expect(outputs.contains { if case .event(let e) = $0 { e.kind == .imbalance && e.attributes["material"] == "msw" } else { false } })
    }

    @Test("with a stock the balance closes: opening + received − fed = closing, no alarm; a missing truck shows as imbalance")
    func stockBalance() throws {
        var setup = Self.setup(ShiftCalendar.standard, totalizer: true)
        setup.stocks = [.init(StockConfig(material: "msw", device: "bunker", channel: "level"), 0.5)]  // 0.5 t per %
        var engine = TallyEngine(setup: setup)
        // Shift 2026-11-23/B (Shanghai, 08:00-16:00 +08:00) starts at 2026-11-23T00:00:00Z.
        let start: Int64 = 1_795_363_200 + 8 * 3600
        var outputs: [TallyOutput] = []
        var seq: UInt64 = 0
        func level(_ t: Int64, _ percent: Double) {
            seq += 1
            outputs += engine.consume(.reading(sequence: seq, Reading(device: "bunker", channel: "level", time: UTCInstant(secondsSinceEpoch: t),
                                                                     value: .double(percent), unit: .percent)))
        }
        // The belt feeds 12 t/h for the whole shift (96 t) and nothing is received, so the bunker (0.5 t per %, a
        // tall one) must fall by 96 t: from 250 % (125 t) to 58 % (29 t).
        level(start + 10, 250)
        for input in Self.inputs(from: start, to: start + 8 * 3600 + 60, until: start + 8 * 3600 + 400, totalizer: true) {
            seq = max(seq, input.sequence) + 1
            switch input {
            case .reading(_, let r): outputs += engine.consume(.reading(sequence: seq, r))
            case .tick(_, let t): outputs += engine.consume(.tick(sequence: seq, time: t))
            case .configure(_, let t, let setup): outputs += engine.consume(.configure(sequence: seq, time: t, setup: setup))
            }
            if input.time.nanosecondsSinceEpoch == UTCInstant(secondsSinceEpoch: start + 8 * 3600 - 60).nanosecondsSinceEpoch { level(start + 8 * 3600 - 30, 58) }
        }
        let report = try #require(try Self.reports(outputs).first)
        let balance = try #require(report["balance"]?.arrayValue?.first?.objectValue)
        #expect(balance["opening_stock_kg"]?.stringValue == "125000.000" && balance["closing_stock_kg"]?.stringValue == "29000.000")
        #expect(balance["fed_kg"]?.stringValue == "96000.000")
        #expect(balance["imbalance_kg"]?.stringValue == "0.000" && balance["exceeded"] == .bool(false))
        #expect(!outputs.contains { if case .event(let e) = $0 { e.kind == .imbalance } else { false } })
    }
}
