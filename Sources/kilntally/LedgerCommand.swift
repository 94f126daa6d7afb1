import ArgumentParser
import KilnTallyCore
import KilnTallyDaemon
import RingStore
import Tally

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "Inspect the ledger of tickets and shift reports (while the daemon is stopped; nothing is modified).",
        subcommands: [Verify.self, Replay.self])

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay the stored readings through a fresh tally and check the ledger's tickets and reports are exactly what it produces.",
            discussion: """
                The tally is deterministic: the readings, clock ticks and configuration changes in the store always give \
                the same records, byte for byte (each configuration the daemon ran with is stored where it took over; \
                --config only matters for a store that holds none). This replays the whole store from the start (a fresh \
                tally, no checkpoint) and compares each ticket and report in the ledger, in order, with the replay's. \
                Exit 0 when the ledger is a prefix of the replay (records the daemon had not written yet are listed), \
                1 naming the first record that differs. Run it with the daemon stopped; nothing is modified.
                """)

        @Option(help: "Configuration file (the one the daemon ran with).")
        var config: String = DefaultPaths.config

        @Option(name: .customLong("state-dir"), help: "State directory (DIR/readings and DIR/ledger).")
        var stateDir: String = DefaultPaths.stateDirectory

        func run() async throws {
            var stderr = StandardError()
            let c: KilnTallyConfiguration
            do { c = try KilnTallyConfiguration.load(file: config) } catch {
                Swift.print(error.description, to: &stderr)
                throw ExitCode(KilnTallyExit.configError.rawValue)
            }
            var engine = TallyEngine(setup: c.tallySetup)
            var replayed: [(id: String, revision: Int, body: [UInt8])] = []
            var inputs = 0
            do {
                try StoreInspector.dump(directory: stateDir + "/readings") { seq, reading in
                    inputs += 1
                    for case .record(_, let id, let revision, let body) in engine.consume(TallyInputs.input(seq, reading)) {
                        replayed.append((id, revision, body))
                    }
                }
            } catch {
                Swift.print("kilntally ledger replay: \(stateDir)/readings: \(error)", to: &stderr)
                throw ExitCode(KilnTallyExit.checkFailed.rawValue)
            }
            var stored: [LedgerRecord] = []
            do {
                try StoreInspector.dumpLedger(directory: stateDir + "/ledger") { r in
                    if r.type == "ticket" || r.type == "report" { stored.append(r) }
                }
            } catch {
                Swift.print("kilntally ledger replay: \(stateDir)/ledger: \(error)", to: &stderr)
                throw ExitCode(KilnTallyExit.checkFailed.rawValue)
            }
            for (n, record) in stored.enumerated() {
                guard n < replayed.count else {
                    Swift.print("MISMATCH ledger seq \(record.sequence): the replay of \(inputs) stored readings produces only \(replayed.count) records")
                    throw ExitCode(KilnTallyExit.checkFailed.rawValue)
                }
                if record.body != replayed[n].body {
                    Swift.print("MISMATCH ledger seq \(record.sequence): the replay's record \(n + 1) (\(replayed[n].id) revision \(replayed[n].revision)) differs")
                    throw ExitCode(KilnTallyExit.checkFailed.rawValue)
                }
            }
            Swift.print("ledger matches the replay of \(inputs) stored readings: \(stored.count) ticket/report records identical, byte for byte")
            for r in replayed.dropFirst(stored.count) {
                Swift.print("not yet in the ledger: \(r.id) revision \(r.revision)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the ledger's hash chain; name the first record that does not match and exit 1, or exit 0 when intact.",
            discussion: """
                Every ticket and shift report carries prev_hash and hash = SHA-256 over the RFC 8785 (JCS) canonical \
                JSON of the record without its hash member; the first links to 64 zeros. A record is chained when it \
                has hash or prev_hash, or its schema is kilntally.ticket/* or kilntally.shift-report/*; other records \
                (events) only have to be JSON objects. Frame damage, missing records and a chain that does not start \
                at 64 zeros although the ledger starts at sequence 1 are failures too. The head hash printed at the \
                end is the chain's newest link: compare it with the hub's copy to show nothing was cut off the end.
                """)

        @Option(name: .customLong("state-dir"), help: "State directory (the ledger is DIR/ledger).")
        var stateDir: String = DefaultPaths.stateDirectory

        @Flag(help: "Machine-readable output.")
        var json = false

        func run() async throws {
            let directory = stateDir + "/ledger"
            let report: LedgerChainReport
            do {
                report = try LedgerChainReport.check(directory: directory)
            } catch {
                var stderr = StandardError()
                Swift.print("kilntally ledger verify: \(directory): \(error)", to: &stderr)
                throw ExitCode(KilnTallyExit.checkFailed.rawValue)
            }
            if json {
                var w = JSONWriter()
                report.write(into: &w)
                print(w.string)
            } else {
                report.show()
            }
            if !report.isIntact { throw ExitCode(KilnTallyExit.checkFailed.rawValue) }
        }
    }
}

/// What `kilntally ledger verify` found: the storage check of `store verify` and the hash chain over the records.
struct LedgerChainReport {
    struct BadRecord {
        var sequence: UInt64
        var type: String
        var id: String?
        var fault: ChainFault
    }

    var storage: StoreVerification
    var verifier = ChainVerifier()
    var firstBad: BadRecord?
    var head: (sequence: UInt64, id: String?)?

    var isIntact: Bool { storage.isClean && storage.gaps.isEmpty && verifier.faults == 0 }

    /// Reads the ledger in `directory` read-only, oldest record first.
    static func check(directory: String) throws(StoreError) -> LedgerChainReport {
        // A missing ledger is an error here (a mistyped --state-dir must not pass as "intact").
        _ = try PosixFileIO().list(directory + "/segments")
        let storage = try StoreInspector.verifyLedger(directory: directory)
        var report = LedgerChainReport(storage: storage)
        // Retention removes whole segments from the front; then the first remaining record links to a removed one.
        report.verifier = ChainVerifier(start: (storage.firstSequence ?? 1) > 1 ? .anyAnchor : .genesis)
        try StoreInspector.dumpLedger(directory: directory) { record in
            let parsed = Result { () throws(CanonicalJSONError) in try CanonicalJSON.parse(record.body) }
            let id = (try? parsed.get())?["id"]?.stringValue
            let before = report.verifier.head
            if case .fault(let fault) = report.verifier.check(parsed: parsed), report.firstBad == nil {
                report.firstBad = BadRecord(sequence: record.sequence, type: record.type, id: id, fault: fault)
            }
            // The verifier's head moves on with every chained record, intact or not (it resynchronizes after a fault).
            if report.verifier.head != before { report.head = (record.sequence, id) }
        }
        return report
    }

    private func named(_ sequence: UInt64, _ id: String?) -> String {
        "seq \(sequence)" + (id.map { " (id \($0))" } ?? "")
    }

    func show() {
        let v = storage
        Swift.print("ledger         \(v.directory)")
        Swift.print("records        \(v.readings)" + (v.firstSequence.map { f in " (sequence \(f)...\(v.lastSequence ?? f))" } ?? ""))
        let start = verifier.anchor.map { "anchored at \($0), records before \(v.firstSequence ?? 0) removed" } ?? "from genesis"
        Swift.print("chained        \(verifier.chained) intact (\(start))")
        Swift.print("unchained      \(verifier.unchained)")
        if let head, let hash = verifier.head { Swift.print("head           \(hash)  \(named(head.sequence, head.id))") }
        if !v.gaps.isEmpty { Swift.print("MISSING        " + v.gaps.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ")) }
        for d in v.damage { Swift.print("DAMAGE         \(d)") }
        if let bad = firstBad {
            Swift.print("FIRST BAD      \(named(bad.sequence, bad.id)) \(bad.type): \(bad.fault)")
            Swift.print("bad records    \(verifier.faults)")
        }
        Swift.print(isIntact ? "ok: chain intact" : "chain broken")
    }

    func write(into w: inout JSONWriter) {
        let v = storage
        w.beginObject()
        w.field("directory", v.directory)
        w.field("intact", isIntact)
        w.field("records", v.readings)
        if let f = v.firstSequence { w.field("first_seq", f) }
        if let l = v.lastSequence { w.field("last_seq", l) }
        w.field("chained", verifier.chained)
        w.field("unchained", verifier.unchained)
        w.field("bad_records", verifier.faults)
        if let anchor = verifier.anchor { w.field("anchor", anchor) }
        if let head, let hash = verifier.head {
            w.field("head_hash", hash)
            w.field("head_seq", head.sequence)
        }
        if let bad = firstBad {
            w.key("first_bad")
            w.beginObject()
            w.field("seq", bad.sequence)
            w.field("type", bad.type)
            if let id = bad.id { w.field("id", id) }
            w.field("fault", bad.fault.code)
            w.field("reason", bad.fault.description)
            w.endObject()
        }
        w.key("missing"); w.beginArray(); for g in v.gaps { w.value("\(g.lowerBound)-\(g.upperBound)") }; w.endArray()
        w.key("damage"); w.beginArray(); for d in v.damage { w.value(d) }; w.endArray()
        w.endObject()
    }
}
