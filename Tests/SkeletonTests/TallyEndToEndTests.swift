import Foundation
import KilnTallyCore
import Logging
import RingStore
import Tally
import TestSupport
import Testing

/// The tally in the running daemon: a scenario simulator (a weighbridge with a truck, a BW500 belt) polled by
/// kilntallyd with 10-second shifts; the ledger gets chained reports and the truck's ticket, and a kill -9 in the
/// middle neither loses nor duplicates a record.
@Suite("Tally in the daemon", .serialized)
struct TallyEndToEndTests {
    static let scenario = """
        seed = 3
        [[device]]
        name = "wb"
        profile = "generic-weighbridge"
          [[device.truck]]
          vehicle = "ZJ-A1"
          arrive = "1s"
          gross = 32010
          tare = 14000
          outbound_after = "17s"
        [[device]]
        name = "belt"
        profile = "siemens-bw500"
        mean_rate = 36
        swing = 0
        noise = 0
        """

    struct Rig {
        let dir: TemporaryDirectory
        let simulator: PeerProcess
        let configPath: String
        let stateDir: String
        var socket: String { dir.file("kilntally.sock") }

        /// Runs `kilntally ARGS` to completion: (exit status, output).
        func cli(_ args: [String]) async throws -> (Int32, String) {
            let p = try PeerProcess(name: "kilntally-\(UInt32.random(in: 0...UInt32.max))", executable: try RepoPaths.builtProduct("kilntally"),
                                    arguments: args, logDirectory: dir.path)
            return (try await p.waitForExit(), p.log())
        }

        func daemon(_ name: String, config: String? = nil) throws -> PeerProcess {
            try PeerProcess(name: name, executable: try RepoPaths.builtProduct("kilntallyd"),
                            arguments: ["--config", config ?? configPath, "--state-dir", stateDir, "--socket", socket],
                            logDirectory: dir.path)
        }

        /// The ledger's records (daemon stopped), parsed.
        func ledgerRecords() async throws -> [(type: String, record: [String: JSONValue], body: [UInt8])] {
            var logger = Logger(label: "ledger-read")
            logger.logLevel = .critical
            let ledger = try await Ledger(directory: stateDir + "/ledger", logger: logger)
            defer { Task { await ledger.close() } }
            var out: [(String, [String: JSONValue], [UInt8])] = []
            var seq: UInt64 = 0
            while true {
                let batch = try await ledger.read(after: seq, limit: 1000)
                guard let last = batch.last else { break }
                seq = last.sequence
                for r in batch { out.append((r.type, try CanonicalJSON.parse(r.body).objectValue ?? [:], r.body)) }
            }
            await ledger.close()
            return out
        }
    }

    static func makeRig(mqttPort: Int? = nil) async throws -> Rig {
        let dir = try TemporaryDirectory()
        try Self.scenario.write(toFile: dir.file("scenario.toml"), atomically: true, encoding: .utf8)
        let simulator = try PeerProcess(
            name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
            arguments: ["simulate", "--scenario", dir.file("scenario.toml"), "--write-config", dir.file("sim.toml")],
            logDirectory: dir.path)
        try await simulator.waitUntil("the simulator's config") { FileManager.default.fileExists(atPath: dir.file("sim.toml")) && simulator.log().contains("belt") }
        // Shifts of 10 s anchored on a whole minute in the past.
        let config = DaemonConfig.header(mqttPort: try mqttPort ?? FreePort.allocate(), reconnect: ("50ms", "500ms"),
                                         batchInterval: "200ms", profileDirs: [])
            + DaemonConfig.shortShifts(cycle: "10s", grace: "1s", tickInterval: "500ms") + """
            [[stream]]
            name = "msw"
            material = "msw"
            feed_point = "calciner"
            device = "belt"
            totalizer = "total1"
            rate = "rate"
            [[weighbridge]]
            name = "wb"
            device = "wb"
            default_material = "msw"
            pair_by = "order"

            """ + (try String(contentsOfFile: dir.file("sim.toml"), encoding: .utf8))
        try config.write(toFile: dir.file("kilntally.toml"), atomically: true, encoding: .utf8)
        return Rig(dir: dir, simulator: simulator, configPath: dir.file("kilntally.toml"), stateDir: dir.file("state"))
    }

    /// KILNTALLY_LONG=1 (the long mode) kills the daemon 8 more times at random moments.
    static let extraKills = ProcessInfo.processInfo.environment["KILNTALLY_LONG"] == "1" ? 8 : 0

    /// The configuration edited between lives: a second stream (the belt's rate alone, as its own material).
    static let addedStream = """

        [[stream]]
        name = "msw-check"
        material = "msw-check"
        feed_point = "kiln_inlet"
        device = "belt"
        rate = "rate"
        """

    @Test("reports per shift and the truck's ticket reach the ledger, chained; after a kill -9 and a restart with an edited config it equals an uninterrupted replay")
    func tallyInTheDaemon() async throws {
        let rig = try await Self.makeRig()
        defer { rig.simulator.stop() }
        var daemon = try rig.daemon("kilntallyd-1")
        try await daemon.waitUntil("a first shift report", timeout: .seconds(40)) { daemon.log().contains("report plant-a/kiln1/") }
        // Killed without warning, mid-run; then started again from its checkpoint. KILNTALLY_LONG=1 adds more lives,
        // each killed at a random moment (a kill may land between a ledger write and its checkpoint).
        daemon.signal(SIGKILL)
        _ = try await daemon.waitForExit()
        var earlier = daemon.log()
        var rng = SplitMix64(seed: UInt64(UInt32.random(in: 0...UInt32.max)))
        for life in 0..<Self.extraKills {
            daemon = try rig.daemon("kilntallyd-extra-\(life)")
            try await Task.sleep(for: .milliseconds(Int64(1_500 + rng.next() % 6_000)))
            daemon.signal(SIGKILL)
            _ = try await daemon.waitForExit()
            earlier += daemon.log()
        }
        let first = earlier
        // The last life runs an edited configuration: it takes effect at the next shift boundary.
        let edited = rig.dir.file("kilntally-edited.toml")
        try (try String(contentsOfFile: rig.configPath, encoding: .utf8) + Self.addedStream)
            .write(toFile: edited, atomically: true, encoding: .utf8)
        daemon = try rig.daemon("kilntallyd-2", config: edited)
        // The truck's ticket may have closed before the kill (a slow machine) or after: look in both lives.
        let second = daemon
        try await second.waitUntil("the truck's ticket closed", timeout: .seconds(60)) {
            (first + second.log()).contains("ticket wb-1 revision 2 written")
        }
        // Two more reports from the second life: the ticket's shift has closed by then, whichever it is.
        let reportsSoFar = second.log().components(separatedBy: "report plant-a/kiln1/").count
        try await second.waitUntil("two reports after the ticket", timeout: .seconds(60)) {
            second.log().components(separatedBy: "report plant-a/kiln1/").count >= reportsSoFar + 2
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.log())")

        // Byte for byte what an uninterrupted tally makes of the same stored readings.
        let replay = try PeerProcess(name: "replay", executable: try RepoPaths.builtProduct("kilntally"),
                                     arguments: ["ledger", "replay", "--config", edited, "--state-dir", rig.stateDir],
                                     logDirectory: rig.dir.path)
        #expect(try await replay.waitForExit() == 0, "\(replay.log())")
        #expect(replay.log().contains("identical, byte for byte"), "\(replay.log())")

        let records = try await rig.ledgerRecords()
        let chained = records.filter { $0.type == "ticket" || $0.type == "report" }
        // One chain over everything, every record once.
        var verifier = ChainVerifier()
        for r in chained {
            guard case .chained = verifier.check(r.body) else {
                Issue.record("record \(r.record["id"] ?? .null) does not verify")
                return
            }
        }
        let keys = chained.map { "\($0.record["id"]!.stringValue!)#\($0.record["revision"]!)" }
        #expect(Set(keys).count == keys.count, "a record written twice: \(keys)")
        // The truck: inbound 32,000 kg (on the 20 kg division), outbound 14,000 kg, net 18,000 kg.
        let ticket = try #require(chained.last { $0.type == "ticket" }?.record)
        #expect(ticket["gross_kg"]?.stringValue == "32000.000" && ticket["tare_kg"]?.stringValue == "14000.000")
        #expect(ticket["net_kg"]?.stringValue == "18000.000" && ticket["status"]?.stringValue == "closed")
        // Reports: consecutive shifts, each stream's fed = end - start, and the ticket in its shift's receipts.
        let reports = chained.filter { $0.type == "report" }.map(\.record)
        #expect(reports.count >= 2)
        // The edit took effect at a boundary: reports before it name the first hash and one stream, those after it
        // the edited config's hash and both streams; never a mix within a report.
        let streamCounts = reports.map { $0["streams"]?.arrayValue?.count ?? 0 }
        let firstEdited = try #require(streamCounts.firstIndex(of: 2), "no report with the added stream: \(streamCounts)")
        #expect(firstEdited > 0 && streamCounts[..<firstEdited].allSatisfy { $0 == 1 } && streamCounts[firstEdited...].allSatisfy { $0 == 2 },
                "\(streamCounts)")
        let hashes = reports.map { $0["config_hash"]?.stringValue ?? "" }
        #expect(Set(hashes[..<firstEdited]).count == 1 && Set(hashes[firstEdited...]).count == 1 && hashes[0] != hashes[firstEdited],
                "\(hashes)")
        for report in reports {
            let stream = try #require(report["streams"]?.arrayValue?.first { $0.objectValue?["name"] == "msw" }?.objectValue)
            if let start = stream["totalizer_start_kg"]?.stringValue, let end = stream["totalizer_end_kg"]?.stringValue,
               let fed = stream["fed_kg"]?.stringValue {
                #expect(abs((Double(end)! - Double(start)!) - Double(fed)!) < 0.0005, "\(report["shift"] ?? .null)")
            }
        }
        let shiftOfTicket = try #require(ticket["shift"]?.stringValue)
        let receipts = reports.last { $0["shift"]?.stringValue == shiftOfTicket }?["receipts"]
        #expect(receipts == .array([.object(["material": "msw", "tickets": 1, "net_kg": "18000.000"])]))
    }

    @Test("tickets, reports and events reach a hub subscriber from the ledger: byte for byte, on their topics, shifts/last retained")
    func ledgerToHub() async throws {
        let brokerDir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: brokerDir)
        defer { broker.stop() }
        let hub = try await MosquittoSubscriber(in: brokerDir, name: "hub", port: broker.port, topic: "kilntally/plant-a/kiln1/#")
        defer { hub.stop() }
        try await hub.waitUntilSubscribed(broker: broker, topic: "kilntally/plant-a/kiln1/#")
        let rig = try await Self.makeRig(mqttPort: broker.port)
        var simulatorRunning = true
        defer { if simulatorRunning { rig.simulator.stop() } }
        let daemon = try rig.daemon("kilntallyd")
        defer { daemon.stop() }
        _ = try await hub.waitForMessages(count: 1, timeout: .seconds(60)) { $0.topic == "kilntally/plant-a/kiln1/tickets" && $0.payload.contains(#""status":"closed""#) }
        _ = try await hub.waitForMessages(count: 2, timeout: .seconds(60)) { $0.topic.hasPrefix("kilntally/plant-a/kiln1/shifts/2") }
        // On the hub's request a technician re-publishes a shift's records and a range of readings.
        let firstShift = try #require(hub.messages().first { $0.topic.hasPrefix("kilntally/plant-a/kiln1/shifts/2") }?.topic)
        let shiftID = String(firstShift.dropFirst("kilntally/plant-a/kiln1/shifts/".count))
        let before = hub.messages().filter { $0.topic == firstShift }.count
        let (rc1, out1) = try await rig.cli(["uplink", "resend", "--shift", shiftID, "--socket", rig.socket])
        #expect(rc1 == 0 && out1.contains("re-publishing") && out1.contains(shiftID), "\(out1)")
        _ = try await hub.waitForMessages(count: before + 1, timeout: .seconds(10)) { $0.topic == firstShift }
        let (rc2, out2) = try await rig.cli(["uplink", "resend", "--from-seq", "1", "--socket", rig.socket])
        #expect(rc2 == 0 && out2.contains("re-publishing readings 1..."), "\(out2)")
        try await hub.process.waitUntil("reading 1 twice at the hub") {
            hub.messages().filter { $0.topic.hasSuffix("/readings") && $0.payload.contains(#""first_seq":1,"#) }.count >= 2
        }
        let (rc3, out3) = try await rig.cli(["uplink", "resend", "--from-seq", "999999999", "--socket", rig.socket])
        #expect(rc3 == 1 && out3.contains("nothing the broker acknowledged"), "\(out3)")
        let (rc4, out4) = try await rig.cli(["uplink", "resend", "--shift", "1999-01-01/A", "--socket", rig.socket])
        #expect(rc4 == 1 && out4.contains("no report or ticket of shift 1999-01-01/A"), "\(out4)")
        let (rc5, out5) = try await rig.cli(["uplink", "resend", "--from-seq", "1", "--socket", rig.dir.file("nobody.sock")])
        #expect(rc5 == 69 && out5.contains("cannot reach the daemon"), "\(out5)")

        // kilntally status: buses and devices answering, the stores, the uplink, the open shift (JSON and table).
        let (rc6, out6) = try await rig.cli(["status", "--json", "--socket", rig.socket])
        #expect(rc6 == 0, "\(out6)")
        let status = try #require(try JSONSerialization.jsonObject(with: Data(out6.utf8)) as? [String: Any])
        #expect((status["node"] as? [String: Any])?["site"] as? String == "plant-a")
        let devices = (status["buses"] as? [[String: Any]] ?? []).flatMap { $0["devices"] as? [[String: Any]] ?? [] }
        #expect(Set(devices.compactMap { $0["device"] as? String }) == ["wb", "belt"])
        #expect(devices.allSatisfy { $0["state"] as? String == "up" && $0["last_good_read"] is String })
        #expect((status["uplink"] as? [String: Any])?["connected"] as? Bool == true)
        let current = (status["tally"] as? [String: Any])?["current"] as? [String: Any]
        #expect((current?["streams"] as? [[String: Any]])?.first?["name"] as? String == "msw")
        let (rc7, out7) = try await rig.cli(["status", "--socket", rig.socket])
        #expect(rc7 == 0 && out7.contains("DEVICE") && out7.contains("uplink: connected"), "\(out7)")

        // The ledger through the daemon, and a correction: the ticket's material set by an operator (revision 3, flag S).
        let (rc8, out8) = try await rig.cli(["tickets", "--socket", rig.socket])
        #expect(rc8 == 0 && out8.contains("wb-1 rev 2 closed"), "\(out8)")
        let (rc9, out9) = try await rig.cli(["shifts", "--last", "2", "--socket", rig.socket])
        #expect(rc9 == 0 && out9.split(separator: "\n").count == 2 && out9.contains("msw"), "\(out9)")
        let (rc10, out10) = try await rig.cli(["ticket", "set-material", "wb-1", "rdf", "--reason", "wrong bunker", "--operator", "zhang",
                                               "--socket", rig.socket])
        #expect(rc10 == 0, "\(out10)")
        let corrected = try await hub.waitForMessages(count: 1, timeout: .seconds(15)) {
            $0.topic.hasSuffix("/tickets") && $0.payload.contains(#""revision":3"#)
        }
        let revised = try #require(try JSONSerialization.jsonObject(with: Data(corrected[0].payload.utf8)) as? [String: Any])
        #expect(revised["material"] as? String == "rdf" && revised["flag"] as? String == "S")
        #expect(((revised["corrections"] as? [[String: Any]])?.first?["operator"] as? String) == "zhang")
        let (rc11, out11) = try await rig.cli(["events", "--socket", rig.socket])
        #expect(rc11 == 0 && out11.contains("ticket_corrected"), "\(out11)")
        let (rc12, out12) = try await rig.cli(["ticket", "void", "wb-99", "--reason", "x", "--operator", "zhang", "--socket", rig.socket])
        #expect(rc12 == 0, "\(out12)")  // stored; the tally refuses it (no such ticket) with an event

        // The plant goes quiet: both devices stop answering, which the hub hears as events.
        rig.simulator.stop()
        simulatorRunning = false
        let downs = try await hub.waitForMessages(count: 2, timeout: .seconds(30)) {
            $0.topic == "kilntally/plant-a/kiln1/events" && $0.payload.contains(#""kind":"device_down""#)
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0, "\(daemon.log())")

        // Every ticket and report in the ledger was published, unchanged, on its topic (at least once).
        let published = hub.messages()
        let records = try await rig.ledgerRecords()
        for r in records where r.type == "ticket" || r.type == "report" {
            let body = String(decoding: r.body, as: UTF8.self)
            let topic: String
            if r.type == "ticket" {
                topic = "kilntally/plant-a/kiln1/tickets"
            } else {
                topic = "kilntally/plant-a/kiln1/shifts/" + (r.record["shift"]?.stringValue ?? "?")
            }
            #expect(published.contains { $0.topic == topic && $0.payload == body && !$0.retained },
                    "\(r.type) \(r.record["id"] ?? .null) revision \(r.record["revision"] ?? .null) not published on \(topic)")
        }
        // Events carry the ledger's sequence number in a stable id, and say which device.
        for m in downs {
            let event = try #require(try JSONSerialization.jsonObject(with: Data(m.payload.utf8)) as? [String: Any])
            let seq = try #require(event["seq"] as? Int)
            #expect(event["schema"] as? String == "kilntally.event/1")
            #expect(event["id"] as? String == "plant-a/kiln1/event-\(seq)")
            #expect(records.contains { $0.type == "event" && $0.record["kind"] == "device_down" }, "events are in the ledger")
            #expect(["wb", "belt"].contains(event["device"] as? String ?? ""))
        }
        // A subscriber arriving later gets the retained shifts/last: the report of the latest shift.
        // (Reports are in the ledger in closing order; a revision of an older shift does not count.)
        var latestStart = ""
        var latestBody: [UInt8] = []
        for r in records where r.type == "report" {
            let start = r.record["start_utc"]?.stringValue ?? ""
            if start >= latestStart { (latestStart, latestBody) = (start, r.body) }
        }
        // The running totals of the open shift were published retained, as the tally went.
        let currents = published.filter { $0.topic == "kilntally/plant-a/kiln1/shifts/current" }
        #expect(!currents.isEmpty)
        if let c = currents.last, let o = try JSONSerialization.jsonObject(with: Data(c.payload.utf8)) as? [String: Any] {
            #expect(o["schema"] as? String == "kilntally.shift-current/1")
            #expect((o["streams"] as? [[String: Any]])?.first?["name"] as? String == "msw")
        }
        let late = try await MosquittoSubscriber(in: brokerDir, name: "late", port: broker.port, topic: "kilntally/plant-a/kiln1/#")
        defer { late.stop() }
        let retained = try await late.waitForMessages(count: 3, timeout: .seconds(10))
        #expect(retained.allSatisfy { $0.retained })
        #expect(retained.first { $0.topic.hasSuffix("/shifts/last") }?.payload == String(decoding: latestBody, as: UTF8.self))
        #expect(retained.first { $0.topic.hasSuffix("/status") }?.payload.contains(#""state":"offline""#) == true)

        // The contract (schemas/, asyncapi/): every message the hub got is valid against its schema, every channel of
        // the AsyncAPI document was used, and exactly the channels it marks retained came back retained.
        let all = published + retained
        let verdicts = try await SchemaCheck.validate(all.map { ("auto", Array($0.payload.utf8)) })
        for (m, verdict) in zip(all, verdicts) where verdict != "ok" {
            Issue.record("\(m.topic): \(verdict)\n\(m.payload.prefix(300))")
        }
        let channels = try await SchemaCheck.channels()
        let used = Set(try await SchemaCheck.channelAddresses(of: all.map(\.topic)))
        #expect(!used.contains("unmatched") && !used.contains("ambiguous"), "\(used)")
        #expect(Set(channels.map(\.address)).subtracting(used).isEmpty, "channels never published: \(Set(channels.map(\.address)).subtracting(used))")
        let retainedChannels = Set(try await SchemaCheck.channelAddresses(of: retained.map(\.topic)))
        #expect(retainedChannels == Set(channels.filter(\.retain).map(\.address)), "\(retainedChannels)")
    }
}
