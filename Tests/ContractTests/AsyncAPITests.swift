import Foundation
import KilnTallyCore
import Testing
import TestSupport
import Uplink

/// The AsyncAPI document (asyncapi/kilntally.asyncapi.yaml) against the schemas and the code's topic tree.
@Suite("MQTT contract: AsyncAPI document")
struct AsyncAPITests {
    static let messages = ["status", "readings", "ticket", "shiftReport", "shiftCurrent", "event"]

    @Test("every example of every message validates against the schema its payload references; chained examples hash right")
    func examplesValidate() async throws {
        let lines = try await SchemaCheck.checkExamples()
        #expect(!lines.isEmpty)
        for line in lines { #expect(line.hasSuffix(" ok"), "\(line)") }
        let examples = Dictionary(grouping: lines.compactMap { $0.split(separator: "/").first.map(String.init) }, by: { $0 })
        #expect(Set(examples.keys) == Set(Self.messages), "messages with examples: \(examples.keys.sorted())")
        #expect(examples["status"]?.count == 3 && examples["ticket"]?.count == 3 && examples["event"]?.count == 3)
    }

    @Test("the example check catches an invalid example, a wrong hash and a schema file that is not there")
    func exampleCheckCatchesMistakes() async throws {
        // A copy of the document beside the real schemas (its $refs are ../schemas/…), with four mistakes.
        let dir = try TemporaryDirectory(prefix: "asyncapi-copy")
        try FileManager.default.createDirectory(atPath: dir.file("asyncapi"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir.file("schemas"), withDestinationPath: SchemaCheck.schemaDirectory)
        var text = try String(contentsOfFile: SchemaCheck.asyncAPI, encoding: .utf8)
        for (from, to) in [
            (#"reason: "shutdown""#, #"reason: """#),  // status/shutdown: an empty reason
            (#"coverage_pct: "99.58""#, "coverage_pct: 99.58"),  // shiftReport/shift-B: a number, not a string
            (#"material: "污泥""#, #"material: "sludge""#),  // ticket/corrected: valid, but no longer what was hashed
            ("'../schemas/kilntally.event.schema.json'", "'../schemas/kilntally.events.schema.json'"),
        ] {
            #expect(text.components(separatedBy: from).count == 2, "\(from) is not unique in the document")
            text = text.replacingOccurrences(of: from, with: to)
        }
        let copy = dir.file("asyncapi/kilntally.asyncapi.yaml")
        try text.write(toFile: copy, atomically: true, encoding: .utf8)
        let lines = try await SchemaCheck.checkExamples(asyncAPI: copy)
        #expect(lines.contains { $0.hasPrefix("status/shutdown invalid $.reason") })
        #expect(lines.contains { $0.hasPrefix("shiftReport/shift-B invalid $.streams[0].coverage_pct") })
        #expect(lines.contains { $0.hasPrefix("ticket/corrected invalid $.hash: the record hashes to") })
        #expect(lines.contains { $0.hasPrefix("problem: message event:") && $0.contains("kilntally.events.schema.json does not exist") })
        #expect(lines.contains("ticket/closed ok") && lines.contains("readings/belt-scale-and-weighbridge ok"))
    }

    @Test("the channels are ARCHITECTURE.md's topic tree, with its retained flags and QoS, each with its schema")
    func channelsAreTheTopicTree() async throws {
        let channels = try await SchemaCheck.channels()
        let base = "{prefix}/{site}/{node}"
        #expect(channels == [
            .init(address: "\(base)/status", qos: 1, retain: true, schemaFile: "schemas/kilntally.status.schema.json"),
            .init(address: "\(base)/readings", qos: 1, retain: false, schemaFile: "schemas/kilntally.readings.schema.json"),
            .init(address: "\(base)/tickets", qos: 1, retain: false, schemaFile: "schemas/kilntally.ticket.schema.json"),
            .init(address: "\(base)/shifts/{date}/{shift}", qos: 1, retain: false, schemaFile: "schemas/kilntally.shift-report.schema.json"),
            .init(address: "\(base)/shifts/last", qos: 1, retain: true, schemaFile: "schemas/kilntally.shift-report.schema.json"),
            .init(address: "\(base)/shifts/current", qos: 1, retain: true, schemaFile: "schemas/kilntally.shift-current.schema.json"),
            .init(address: "\(base)/events", qos: 1, retain: false, schemaFile: "schemas/kilntally.event.schema.json"),
        ])
    }

    @Test("every topic of the code's TopicTree belongs to exactly one channel, and every channel is one of them")
    func topicTreeMatchesChannels() async throws {
        let tree = TopicTree(prefix: "kilntally", identity: NodeIdentity(site: "plant-a", node: "kiln1"))
        let topics = [tree.status, tree.readings, tree.tickets, tree.shift(date: "2026-11-23", name: "B"),
                      tree.shift(date: "2026-11-23", name: "B-081200"), tree.shiftsLast, tree.shiftsCurrent, tree.events]
        let addresses = try await SchemaCheck.channelAddresses(of: topics + ["kilntally/plant-a/kiln1/shifts/2026-11-23",
                                                                             "kilntally/plant-a/status"])
        let base = "{prefix}/{site}/{node}"
        #expect(addresses == [
            "\(base)/status", "\(base)/readings", "\(base)/tickets", "\(base)/shifts/{date}/{shift}", "\(base)/shifts/{date}/{shift}",
            "\(base)/shifts/last", "\(base)/shifts/current", "\(base)/events", "unmatched", "unmatched",
        ])
        let channels = try await SchemaCheck.channels()
        #expect(Set(addresses.dropLast(2)) == Set(channels.map(\.address)))
    }
}
