import Foundation
import KilnTallyCore
import Tally
import Testing
import TestSupport
import Uplink

/// The JSON Schemas of the MQTT contract (schemas/) against what the code actually makes, checked by `jsonschema`
/// (Tests/peers/schema_check.py): strict schemas, real payloads accepted, and mutated payloads — one change each —
/// rejected, so the schemas are shown not to be empty shells.
@Suite("MQTT contract: payload schemas")
struct PayloadSchemaTests {
    typealias Step = EditableJSON.Step

    @Test("every schema is a valid 2020-12 schema, closed at every object level, and optional only where the code omits a field")
    func schemasAreStrict() async throws {
        let lines = try await SchemaCheck.checkSchemas()
        #expect(lines == [
            "kilntally.event.schema.json ok optional=",
            "kilntally.readings.schema.json ok optional=/$defs/reading/properties/exception,/$defs/reading/properties/unit",
            "kilntally.shift-current.schema.json ok optional=",
            "kilntally.shift-report.schema.json ok optional=/$defs/balance/properties/closing_stock_kg,"
                + "/$defs/balance/properties/opening_stock_kg,/$defs/stream/properties/disagreement_exceeded,"
                + "/$defs/stream/properties/disagreement_kg",
            "kilntally.status.schema.json ok optional=/properties/clock_synchronized,/properties/reason,/properties/time",
            "kilntally.ticket.schema.json ok optional=",
        ])
    }

    @Test("the strictness check catches a loosened schema: an open object, a missing required list, an unclosed map, a dangling $ref, a $def that drifted")
    func strictnessCheckCatchesLooseSchemas() async throws {
        let dir = try TemporaryDirectory(prefix: "loose-schemas")
        func load(_ name: String) throws -> EditableJSON {
            try EditableJSON(parsing: Array(try Data(contentsOf: URL(fileURLWithPath: "\(SchemaCheck.schemaDirectory)/kilntally.\(name).schema.json"))))
        }
        func save(_ name: String, _ schema: EditableJSON) throws {
            try Data(schema.bytes).write(to: URL(fileURLWithPath: dir.file("kilntally.\(name).schema.json")))
        }
        // One loosening per file, so each file's line shows whether that one was caught.
        try save("status", try load("status").setting([.key("additionalProperties")], to: nil))
        try save("readings", try load("readings").setting([.key("$defs"), .key("reading"), .key("additionalProperties")], to: true))
        try save("ticket", try load("ticket").setting([.key("$defs"), .key("snapshot"), .key("required")], to: nil))
        try save("shift-report", try load("shift-report").setting([.key("$defs"), .key("stream"), .key("properties"), .key("flag")],
                                                                  to: .object([.init(key: "$ref", value: "#/$defs/flag")])))
        try save("event", try load("event").setting([.key("properties"), .key("attributes"), .key("propertyNames")], to: nil))
        try save("shift-current", try load("shift-current").setting([.key("$defs"), .key("kg"), .key("pattern")], to: "^.*$"))
        let lines = try await SchemaCheck.checkSchemas(in: dir.path)
        for (file, why) in [
            ("kilntally.status.schema.json", "an object with properties but without additionalProperties: false"),
            ("kilntally.readings.schema.json", "/$defs/reading: an object with properties but without additionalProperties: false"),
            ("kilntally.ticket.schema.json", "/$defs/snapshot: an object without a required list"),
            ("kilntally.shift-report.schema.json", "$ref #/$defs/flag does not resolve"),
            ("kilntally.event.schema.json", "/properties/attributes: an object without properties must be a map"),
            ("kilntally.shift-current.schema.json", "$defs/kg differs from the one in"),
        ] {
            #expect(lines.contains { $0.hasPrefix("\(file) problem:") && $0.contains(why) }, "\(file): \(why) not reported in \(lines)")
            #expect(!lines.contains("\(file) ok"), "\(file) passed")
        }
    }

    // MARK: real payloads

    @Test("real payloads validate: status (birth, will, shutdown), a readings batch with every value kind, and every ticket and shift-report record of a tally run")
    func realPayloadsValidate() async throws {
        let run = ContractFixtures.engineRun()
        let tickets = try run.tickets.map { try EditableJSON(parsing: $0) }
        let reports = try run.reports.map { try EditableJSON(parsing: $0) }
        // The run covers every shape the schemas allow for.
        #expect(Set(tickets.compactMap { $0[.key("status")] }) == ["open", "closed", "voided"])
        #expect(Set(tickets.flatMap { $0[.key("corrections")]?.items ?? [] }.compactMap { $0[.key("action")] }) == ["set_material", "void"])
        #expect(tickets.contains { $0[.key("status")] == "voided" && $0[.key("closed_at")] == .null && $0[.key("shift")] != .null })
        // Shift A (the tally's first input is a minute before B), B, and B's revision for the late correction.
        #expect(reports.map { $0[.key("shift")] } == ["2026-11-23/A", "2026-11-23/B", "2026-11-23/B"])
        #expect(reports.map { $0[.key("revision")] } == [1, 1, 2])
        let streams = reports.flatMap { $0[.key("streams")]?.items ?? [] }
        #expect(streams.contains { $0[.key("disagreement_kg")] != nil } && streams.contains { $0[.key("disagreement_kg")] == nil })
        let balance = reports.flatMap { $0[.key("balance")]?.items ?? [] }
        #expect(balance.contains { $0[.key("opening_stock_kg")] != nil } && balance.contains { $0[.key("opening_stock_kg")] == nil })
        #expect(reports.map { $0[.key("receipts")]?.items?.count } == [0, 1, 1])
        let readings = try EditableJSON(parsing: ContractFixtures.readingsBatch)
        #expect(readings[.key("readings")]?.items?.contains { $0[.key("exception")] == 2 } == true)

        var documents: [(schema: String, json: [UInt8])] = [
            ("status", ContractFixtures.statusOnline), ("status", ContractFixtures.statusWill),
            ("status", ContractFixtures.statusShutdown), ("readings", ContractFixtures.readingsBatch),
        ]
        documents += run.tickets.map { ("ticket", $0) } + run.reports.map { ("shift-report", $0) }
        // And by their own `schema` field, as a hub-side check of whatever arrives would pick the schema.
        documents += documents.map { ("auto", $0.json) }
        let results = try await SchemaCheck.validate(documents)
        for (d, result) in zip(documents, results) {
            #expect(result == "ok", "\(d.schema): \(result)\n\(String(decoding: d.json, as: UTF8.self))")
        }
    }

    // MARK: mutations

    enum Kind: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case status, readings, ticket, shiftReport = "shift-report", event, shiftCurrent = "shift-current"
        var testDescription: String { rawValue }
    }

    struct Case {
        var label: String
        var document: EditableJSON
        /// A variant the schema must still accept (so the mutations are rejected for their change, not for being
        /// variants at all).
        var valid = false
    }

    @Test("mutated payloads are rejected, each for its one change", arguments: Kind.allCases)
    func mutationsAreRejected(kind: Kind) async throws {
        let cases = try Self.cases(kind)
        #expect(cases.count >= 20)
        let results = try await SchemaCheck.validate(cases.map { (kind.rawValue, $0.document.bytes) })
        for (c, result) in zip(cases, results) {
            if c.valid {
                #expect(result == "ok", "\(kind.rawValue): \(c.label) should be accepted: \(result)\n\(c.document.text)")
            } else {
                #expect(result.hasPrefix("invalid "), "\(kind.rawValue): \(c.label) was accepted\n\(c.document.text)")
            }
        }
    }

    // Building blocks: each returns mutations of `base`.

    static func valid(_ label: String, _ base: EditableJSON) -> Case { Case(label: "valid: \(label)", document: base, valid: true) }

    /// `base` without each member of the object at `path`, in turn (`except`: members that may be left out).
    static func drops(_ base: EditableJSON, at path: [Step] = [], except: Set<String> = []) -> [Case] {
        base.keys(at: path).filter { !except.contains($0) }.map {
            Case(label: "without \(Self.name(path)).\($0)", document: base.setting(path + [.key($0)], to: nil))
        }
    }

    static func unknown(_ base: EditableJSON, at path: [Step] = []) -> Case {
        Case(label: "unknown member in \(name(path))", document: base.setting(path + [.key("unexpected")], to: "x"))
    }

    static func set(_ base: EditableJSON, _ path: [Step], _ value: EditableJSON?, _ why: String, valid: Bool = false) -> Case {
        Case(label: "\(name(path)) = \(value?.text ?? "(removed)"): \(why)", document: base.setting(path, to: value), valid: valid)
    }

    static func name(_ path: [Step]) -> String { "$" + path.map(\.description).joined() }

    /// Bad timestamps: what RFC 3339 or the code's form (milliseconds, Z) does not allow.
    static func badTimes(_ base: EditableJSON, _ path: [Step], local: Bool = false) -> [Case] {
        var bad: [EditableJSON] = ["2026-11-23T01:41:05Z", "2026-11-23 01:41:05.000Z", "2026-11-23T01:41:05.000",
                                   "2026-11-23T01:41:05.000+0800", "2026-02-30T01:41:05.000Z", "2026-11-23T24:00:00.000Z",
                                   "2026-11-23T01:41:05.1234Z", "1795392065", 1_795_392_065, .null]
        if !local { bad.append("2026-11-23T09:41:05.000+08:00") }
        return bad.map { set(base, path, $0, "not a timestamp the code writes") }
    }

    static func badMasses(_ base: EditableJSON, _ path: [Step]) -> [Case] {
        [.number("19220.000"), .number("19220"), "19220", "19220.00", "19220.0000", "1.9220e4", "019220.000", "19,220.000", ""]
            .map { set(base, path, $0, "not a 3-decimal fixed-point string") }
    }

    static func badFlags(_ base: EditableJSON, _ path: [Step]) -> [Case] {
        ["X", "n", "NN", "", 1, .null].map { set(base, path, $0, "not a DataFlag letter") }
    }

    static func badHashes(_ base: EditableJSON, _ path: [Step]) -> [Case] {
        let good = base.value(at: path)?.string ?? String(repeating: "0", count: 64)
        return [String(good.dropLast()), good + "0", good.uppercased(), String(good.dropLast()) + "g", ""]
            .map { set(base, path, .string($0), "not 64 lowercase hex digits") }
    }

    static func cases(_ kind: Kind) throws -> [Case] {
        switch kind {
        case .status: return try statusCases()
        case .readings: return try readingsCases()
        case .ticket: return try ticketCases()
        case .shiftReport: return try reportCases()
        case .event: return try eventCases()
        case .shiftCurrent: return try shiftCurrentCases()
        }
    }

    static func statusCases() throws -> [Case] {
        let online = try EditableJSON(parsing: ContractFixtures.statusOnline)
        let will = try EditableJSON(parsing: ContractFixtures.statusWill)
        var cases = [valid("birth", online), valid("will", will),
                     valid("birth without a synchronized clock", online.setting([.key("clock_synchronized")], to: false))]
        // Online needs its time and clock state, offline its reason: every member of both forms is required.
        cases += drops(online) + drops(will) + [unknown(online), unknown(will)]
        cases += [
            set(online, [.key("state")], "Online", "not a state"), set(online, [.key("state")], .null, "no state"),
            set(online, [.key("schema")], "kilntally.status/2", "another schema"),
            set(online, [.key("site")], "plant a", "a site that cannot be a topic level"),
            set(online, [.key("node")], "kiln/1", "a node that cannot be a topic level"),
            set(online, [.key("config_hash")], "5BE1F2A09C3D4E17", "uppercase hex"),
            set(online, [.key("config_hash")], "5be1f2a09c3d4e1", "15 digits"),
            set(online, [.key("version")], "v0.1", "not a version"),
            set(online, [.key("clock_synchronized")], "true", "a string, not a boolean"),
            set(will, [.key("reason")], "", "an empty reason"),
        ]
        cases += badTimes(online, [.key("started_at")]) + badTimes(online, [.key("time")])
        return cases
    }

    static func readingsCases() throws -> [Case] {
        let batch = try EditableJSON(parsing: ContractFixtures.readingsBatch)
        let items = batch[.key("readings")]?.items ?? []
        let good = try #require(items.firstIndex { $0[.key("unit")] != nil && $0[.key("quality")] == "good" })
        let fault = try #require(items.firstIndex { $0[.key("exception")] != nil })
        let r: [Step] = [.key("readings"), .index(good)], f: [Step] = [.key("readings"), .index(fault)]
        var cases = [valid("batch", batch), valid("a reading without a unit", batch.setting(r + [.key("unit")], to: nil)),
                     valid("a device fault without an exception code", batch.setting(f + [.key("exception")], to: nil))]
        cases += drops(batch) + drops(batch, at: r, except: ["unit"]) + [unknown(batch), unknown(batch, at: r)]
        cases += [
            set(batch, [.key("readings")], [], "an empty batch"),
            set(batch, [.key("first_seq")], 0, "sequence numbers start at 1"),
            set(batch, [.key("last_seq")], "4000015", "a sequence number as a string"),
            set(batch, r + [.key("seq")], -1, "a negative sequence number"),
            set(batch, r + [.key("seq")], .number("18446744073709551616"), "beyond UInt64"),
            set(batch, r + [.key("value")], .object([]), "an object value"),
            set(batch, r + [.key("value")], [1, 2], "an array value"),
            set(batch, r + [.key("unit")], "tonnes", "not a Unit"), set(batch, r + [.key("unit")], .null, "a null unit"),
            set(batch, r + [.key("quality")], "bad", "not a Quality"),
            set(batch, r + [.key("exception")], 2, "an exception code on a good reading"),
            set(batch, f + [.key("exception")], 16, "an exception code beyond 4 bits"),
            set(batch, f + [.key("exception")], 0, "exception 0 is written as no exception"),
            set(batch, r + [.key("raw")], [65536], "a register beyond 16 bits"),
            set(batch, r + [.key("raw")], [-1], "a negative register"),
            set(batch, r + [.key("device")], "belt 1", "a device name with a space"),
            set(batch, r + [.key("channel")], "", "an empty channel name"),
            set(batch, r + [.key("clock_synchronized")], .null, "no clock state"),
        ]
        cases += badTimes(batch, r + [.key("time")])
        return cases
    }

    static func ticketCases() throws -> [Case] {
        let tickets = try ContractFixtures.engineRun().tickets.map { try EditableJSON(parsing: $0) }
        let corrected = try #require(tickets.last { $0[.key("status")] == "closed" && $0[.key("corrections")]?.items?.isEmpty == false })
        let open = try #require(tickets.first { $0[.key("status")] == "open" })
        let voided = try #require(tickets.first { $0[.key("status")] == "voided" })
        let inbound: [Step] = [.key("inbound")], correction: [Step] = [.key("corrections"), .index(0)]
        let bit: [Step] = inbound + [.key("status"), .index(0)]
        let void = try #require(voided[.key("corrections")]?.items?.first)
        var cases = [valid("closed and corrected", corrected), valid("open", open), valid("voided while open", voided)]
        cases += drops(corrected) + drops(corrected, at: inbound) + drops(corrected, at: [.key("outbound")])
        cases += drops(corrected, at: correction) + drops(corrected, at: bit)
        cases += [unknown(corrected), unknown(corrected, at: inbound), unknown(corrected, at: correction), unknown(corrected, at: bit),
                  unknown(voided, at: [.key("corrections"), .index(0)])]
        cases += badMasses(corrected, [.key("net_kg")]) + badMasses(corrected, [.key("gross_kg")])
        cases += badMasses(corrected, inbound + [.key("weight_kg")])
        cases += badFlags(corrected, [.key("flag")]) + badHashes(corrected, [.key("hash")]) + badHashes(corrected, [.key("prev_hash")])
        cases += badTimes(corrected, [.key("closed_at")])
        cases += badTimes(corrected, inbound + [.key("time")]) + badTimes(corrected, correction + [.key("time")])
        cases += [
            set(corrected, [.key("net_kg")], "-1.000", "a negative net"),
            set(corrected, [.key("net_kg")], .null, "a closed ticket without a net"),
            set(corrected, [.key("closed_at")], .null, "a closed ticket without its closing time"),
            set(corrected, [.key("shift")], .null, "a closed ticket in no shift"),
            set(corrected, [.key("shift")], "2026-11-23", "a shift id without a name"),
            set(corrected, [.key("shift")], "2026-11-23/B C", "a shift name with a space"),
            set(corrected, [.key("shift")], "2026-13-23/B", "month 13"),
            set(corrected, [.key("flag")], "N", "a corrected ticket not flagged S"),
            set(corrected, [.key("status")], "closedd", "not a Ticket.Status"),
            set(corrected, [.key("revision")], 0, "revisions start at 1"),
            set(corrected, [.key("id")], "wb1-0", "running numbers start at 1"),
            set(corrected, [.key("id")], "wb1", "no running number"),
            set(corrected, [.key("material")], "", "an empty material"),
            set(corrected, [.key("vehicle")], 12345, "a vehicle as a number"),
            set(corrected, [.key("config_hash")], .null, "no config hash"),
            set(corrected, [.key("schema")], "kilntally.shift-report/1", "another schema"),
            set(corrected, [.key("corrections")], .null, "corrections must be a list"),
            set(corrected, correction + [.key("action")], "delete", "not a correction action"),
            set(corrected, correction + [.key("to")], nil, "set_material without its new material"),
            set(corrected, correction + [.key("operator")], "", "an anonymous correction"),
            set(corrected, correction + [.key("revision")], 1, "revision 1 is never a correction"),
            set(corrected, bit + [.key("role")], "weight", "not a status-bit role"),
            set(corrected, bit + [.key("value")], 1, "a status bit as a number"),
            set(corrected, inbound + [.key("raw")], [70000], "a register beyond 16 bits"),
            set(open, [.key("net_kg")], "19220.000", "an open ticket with a net"),
            set(open, [.key("shift")], "2026-11-23/B", "an open ticket already in a shift"),
            set(open, [.key("outbound")], corrected[.key("outbound")], "an open ticket with a second weighing"),
            set(voided, [.key("flag")], "N", "a voided ticket not flagged S"),
            set(voided, [.key("corrections"), .index(0), .key("from")], "msw", "a void with a material change's members"),
            set(voided, [.key("corrections"), .index(0)], void.setting([.key("action")], to: "set_material"), "set_material without from/to"),
        ]
        return cases
    }

    static func reportCases() throws -> [Case] {
        let reports = try ContractFixtures.engineRun().reports.map { try EditableJSON(parsing: $0) }
        let report = try #require(reports.first { $0[.key("receipts")]?.items?.isEmpty == false })
        let streams = report[.key("streams")]?.items ?? []
        let both = try #require(streams.firstIndex { $0[.key("disagreement_kg")] != nil })
        let rateOnly = try #require(streams.firstIndex { $0[.key("disagreement_kg")] == nil })
        let balance = report[.key("balance")]?.items ?? []
        let stocked = try #require(balance.firstIndex { $0[.key("opening_stock_kg")] != nil })
        let s: [Step] = [.key("streams"), .index(both)], b: [Step] = [.key("balance"), .index(stocked)]
        let receipt: [Step] = [.key("receipts"), .index(0)]
        var cases = [
            valid("report", report), valid("revision 2", try #require(reports.last)),
            valid("a stream without the disagreement pair",
                  report.setting(s + [.key("disagreement_kg")], to: nil).setting(s + [.key("disagreement_exceeded")], to: nil)),
            valid("a balance without a stock",
                  report.setting(b + [.key("opening_stock_kg")], to: nil).setting(b + [.key("closing_stock_kg")], to: nil)),
            valid("a stock level that could not be read", report.setting(b + [.key("closing_stock_kg")], to: .null)),
            valid("a crew", report.setting([.key("crew")], to: "甲")),
            valid("a cycle shift in UTC", report.setting([.key("shift")], to: "2026-11-23/B-081200")
                .setting([.key("id")], to: "plant-a/kiln1/2026-11-23/B-081200")
                .setting([.key("start_local")], to: "2026-11-23T08:12:00.000Z")),
            valid("a rate-only stream's figures", report.setting(s, to: streams[rateOnly])),
        ]
        // Dropping one of a pair that goes together is rejected too (dependentRequired).
        cases += drops(report) + drops(report, at: s) + drops(report, at: b) + drops(report, at: receipt)
        cases += [unknown(report), unknown(report, at: s), unknown(report, at: b), unknown(report, at: receipt)]
        cases += badMasses(report, s + [.key("fed_kg")]) + badMasses(report, b + [.key("imbalance_kg")])
        cases += badMasses(report, receipt + [.key("net_kg")]) + badMasses(report, s + [.key("disagreement_kg")])
        cases += badFlags(report, [.key("flag")]) + badFlags(report, s + [.key("flag")])
        cases += [set(report, s + [.key("conditions")], ["X"], "not a DataFlag letter"), set(report, s + [.key("conditions")], ["b"], "lowercase")]
        cases += badHashes(report, [.key("hash")]) + badHashes(report, [.key("prev_hash")])
        cases += badTimes(report, [.key("start_utc")]) + badTimes(report, [.key("closed_at")]) + badTimes(report, [.key("end_local")], local: true)
        cases += [
            set(report, [.key("start_local")], "2026-11-23T08:00:00.000+8:00", "a one-digit offset hour"),
            set(report, [.key("start_local")], "2026-11-23T08:00:00.000+15:00", "an offset no zone has"),
            set(report, [.key("start_local")], "2026-11-23T08:00:00.000 +08:00", "a space before the offset"),
            set(report, [.key("id")], "plant-a/2026-11-23/B", "an id without the node"),
            set(report, [.key("id")], "plant-a/kiln1/2026-11-23", "an id without the shift name"),
            set(report, [.key("shift")], "2026-11-32/B", "day 32"),
            set(report, [.key("shift")], "26-11-23/B", "a two-digit year"),
            set(report, [.key("crew")], "", "an empty crew"),
            set(report, [.key("length_s")], 0, "a shift that lasts no time"),
            set(report, [.key("revision")], "1", "a revision as a string"),
            set(report, s + [.key("feed_point")], "kiln", "not a FeedPoint"),
            set(report, s + [.key("coverage_pct")], "100.01", "over 100 %"),
            set(report, s + [.key("coverage_pct")], "99.5", "one decimal"),
            set(report, s + [.key("coverage_pct")], .number("99.58"), "a percentage as a number"),
            set(report, s + [.key("coverage_pct")], "-1.00", "negative coverage"),
            set(report, s + [.key("rate_avg_tph")], "12.0", "a rate with one decimal"),
            set(report, s + [.key("rate_avg_tph")], .number("12"), "a rate as a number"),
            set(report, s + [.key("run_time_s")], -1, "a negative run time"),
            set(report, s + [.key("conditions")], ["B", "B"], "a condition twice"),
            set(report, s + [.key("disagreement_exceeded")], "false", "a boolean as a string"),
            set(report, s + [.key("name")], "msw calciner", "a stream name with a space"),
            set(report, b + [.key("received_kg")], "-5.000", "received less than nothing"),
            set(report, b + [.key("exceeded")], .null, "no exceeded"),
            set(report, receipt + [.key("tickets")], 0, "a receipt without tickets"),
            set(report, [.key("streams")], .object([]), "streams must be a list"),
        ]
        return cases
    }

    static func eventCases() throws -> [Case] {
        let event = try EditableJSON(parsing: ContractFixtures.event)
        let plain = try EditableJSON(parsing: ContractFixtures.eventWithoutDevice)
        var cases = [valid("device_down", event), valid("tally_config_changed without a device", plain)]
        cases += Event.Kind.allCases.map { valid("kind \($0.rawValue)", event.setting([.key("kind")], to: .string($0.rawValue))) }
        cases += Event.Severity.allCases.map { valid("severity \($0.rawValue)", event.setting([.key("severity")], to: .string($0.rawValue))) }
        cases += drops(event) + drops(plain) + [unknown(event)]
        cases += badTimes(event, [.key("time")])
        cases += [
            set(event, [.key("kind")], "device_gone", "not an Event.Kind"),
            set(event, [.key("severity")], "critical", "not a severity"),
            set(event, [.key("id")], "plant-a/kiln1/evt-42", "not <site>/<node>/event-<seq>"),
            set(event, [.key("id")], "event-42", "an id without site and node"),
            set(event, [.key("id")], "plant-a/kiln1/event-0", "sequence numbers start at 1"),
            set(event, [.key("seq")], 0, "sequence numbers start at 1"),
            set(event, [.key("seq")], "42", "a sequence number as a string"),
            set(event, [.key("device")], "belt 1", "a device name with a space"),
            set(event, [.key("message")], "", "an empty message"),
            set(event, [.key("attributes"), .key("errno")], 110, "an attribute that is not a string"),
            set(event, [.key("attributes"), .key("Bad-Key")], "x", "an attribute key that is not snake_case"),
            set(event, [.key("attributes")], [], "attributes must be an object"),
            set(event, [.key("schema")], "kilntally.events/1", "another schema"),
        ]
        return cases
    }

    static func shiftCurrentCases() throws -> [Case] {
        let current = try EditableJSON(parsing: ContractFixtures.shiftCurrent)
        let cycle = try EditableJSON(parsing: ContractFixtures.shiftCurrentCycle)
        let s: [Step] = [.key("streams"), .index(0)], r: [Step] = [.key("receipts"), .index(0)]
        var cases = [valid("open shift B", current), valid("a cycle shift without crew, streams or receipts", cycle)]
        cases += drops(current) + drops(current, at: s) + drops(current, at: r) + drops(cycle)
        cases += [unknown(current), unknown(current, at: s), unknown(current, at: r)]
        cases += badMasses(current, s + [.key("fed_kg")]) + badMasses(current, r + [.key("net_kg")]) + badFlags(current, s + [.key("flag")])
        cases += badTimes(current, [.key("as_of")]) + badTimes(current, [.key("start_local")], local: true)
        cases += [
            set(current, [.key("hash")], .string(String(repeating: "0", count: 64)), "not a ledger record: no hash"),
            set(current, [.key("revision")], 1, "not a ledger record: no revision"),
            set(current, s + [.key("coverage_pct")], "100.001", "three decimals"),
            set(current, s + [.key("feed_point")], "burner", "not a FeedPoint"),
            set(current, r + [.key("tickets")], "2", "a count as a string"),
            set(current, [.key("id")], "plant-a/kiln1/2026-11-23/B/1", "an id with a revision"),
            set(current, [.key("shift")], "B", "a shift without its date"),
            set(current, [.key("config_hash")], .string(String(repeating: "a", count: 64)), "a 64-digit config hash"),
        ]
        return cases
    }
}

extension EditableJSON {
    var items: [EditableJSON]? { if case .array(let a) = self { a } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
}

extension EditableJSON: Hashable {
    func hash(into hasher: inout Hasher) { hasher.combine(text) }
}

