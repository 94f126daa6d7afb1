import ArgumentParser
import KilnTallyCore
import RingStore

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Inspect the reading store (while the daemon is stopped; nothing is modified).",
        subcommands: [Verify.self, Dump.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every record of the reading ring; exit 1 on damage.")

        @Option(name: .customLong("state-dir"), help: "State directory.")
        var stateDir: String = DefaultPaths.stateDirectory

        @Flag(help: "Machine-readable output.")
        var json = false

        func run() async throws {
            var results: [StoreVerification] = []
            var failed = false
            for (name, verify) in [("readings", StoreInspector.verify), ("ledger", StoreInspector.verifyLedger)] {
                let dir = stateDir + "/" + name
                // The ledger exists once the tally has written to it; a missing store is not damage.
                if name == "ledger", (try? PosixFileIO().list(dir)) == nil { continue }
                do {
                    results.append(try verify(dir, PosixFileIO()))
                } catch {
                    var stderr = StandardError()
                    Swift.print("kilntally store verify: \(error)", to: &stderr)
                    failed = true
                }
            }
            if json {
                var w = JSONWriter()
                w.beginArray()
                for v in results { Self.write(v, into: &w) }
                w.endArray()
                print(w.string)
            } else {
                for v in results { Self.show(v) }
            }
            if failed || results.contains(where: { !$0.isClean }) { throw ExitCode(KilnTallyExit.checkFailed.rawValue) }
        }

        static func write(_ v: StoreVerification, into w: inout JSONWriter) {
            w.beginObject()
            w.field("directory", v.directory)
            w.field("clean", v.isClean)
            w.field("segments", v.segments)
            w.field(v.unit, v.readings)
            w.field("bytes", v.bytes)
            w.field("bytes_per_\(v.unit == "readings" ? "reading" : "record")", (v.bytesPerReading * 100).rounded() / 100)
            if let f = v.firstSequence { w.field("first_seq", f) }
            if let l = v.lastSequence { w.field("last_seq", l) }
            if let t = v.firstTime { w.field("first_time", t.rfc3339) }
            if let t = v.lastTime { w.field("last_time", t.rfc3339) }
            w.field("torn_tail_bytes", v.tornTailBytes)
            w.key("gaps"); w.beginArray(); for g in v.gaps { w.value("\(g.lowerBound)-\(g.upperBound)") }; w.endArray()
            w.key("damage"); w.beginArray(); for d in v.damage { w.value(d) }; w.endArray()
            w.key("quarantined"); w.beginArray(); for q in v.quarantined { w.value(q) }; w.endArray()
            w.endObject()
        }

        static func show(_ v: StoreVerification) {
            Swift.print("store          \(v.directory)")
            Swift.print("segments       \(v.segments) (\(v.bytes) bytes)")
            Swift.print("\(v.unit.padding(15))\(v.readings)" + (v.readings > 0 ? "  (\((v.bytesPerReading * 10).rounded() / 10) bytes each)" : ""))
            if let f = v.firstSequence, let l = v.lastSequence { Swift.print("sequence       \(f)...\(l)") }
            if let f = v.firstTime, let l = v.lastTime { Swift.print("time           \(f.rfc3339) ... \(l.rfc3339)") }
            if !v.gaps.isEmpty { Swift.print("gaps           " + v.gaps.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ")) }
            if v.tornTailBytes > 0 { Swift.print("torn tail      \(v.tornTailBytes) bytes (cut at the next open; normal after a power cut)") }
            for q in v.quarantined { Swift.print("quarantined    \(q)") }
            for d in v.damage { Swift.print("DAMAGE         \(d)") }
            Swift.print(v.isClean ? "ok" : "damage found")
            Swift.print("")
        }
    }

    struct Dump: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print stored readings, oldest first.")

        @Option(name: .customLong("state-dir"), help: "State directory.")
        var stateDir: String = DefaultPaths.stateDirectory

        @Option(help: "First sequence number to print.")
        var from: UInt64 = 0

        @Option(help: "Print at most this many readings.")
        var limit: Int = .max

        @Flag(help: "One JSON object per line.")
        var json = false

        @Flag(help: "Print the ledger's records (tickets, shift reports, events) instead of readings.")
        var ledger = false

        func run() async throws {
            if ledger {
                do {
                    try StoreInspector.dumpLedger(directory: stateDir + "/ledger", from: from, limit: limit) { r in
                        let body = String(decoding: r.body, as: UTF8.self)
                        if json {
                            var w = JSONWriter()
                            w.beginObject()
                            w.field("seq", r.sequence)
                            w.field("time", r.time.rfc3339)
                            w.field("type", r.type)
                            w.field("body", body)
                            w.endObject()
                            Swift.print(w.string)
                        } else {
                            Swift.print("\(r.sequence)\t\(r.time.rfc3339)\t\(r.type)\t\(body)")
                        }
                    }
                } catch {
                    var stderr = StandardError()
                    Swift.print("kilntally store dump: \(error)", to: &stderr)
                    throw ExitCode(KilnTallyExit.checkFailed.rawValue)
                }
                return
            }
            do {
                try StoreInspector.dump(directory: stateDir + "/readings", from: from, limit: limit) { seq, r in
                    if json {
                        var w = JSONWriter()
                        w.beginObject()
                        w.field("seq", seq)
                        w.readingFields(r)
                        w.endObject()
                        print(w.string)
                    } else {
                        let value: String = switch r.value {
                        case .int(let v): String(v)
                        case .uint(let v): String(v)
                        case .double(let v): String(v)
                        case .bool(let v): String(v)
                        case .string(let v): "\"\(v)\""
                        case .none: "-"
                        }
                        print("\(seq)\t\(r.time.rfc3339)\t\(r.device)/\(r.channel)\t\(value)\(r.unit.map { " " + $0.rawValue } ?? "")\t\(r.quality.rawValue)")
                    }
                }
            } catch {
                var stderr = StandardError()
                print("kilntally store dump: \(error)", to: &stderr)
                throw ExitCode(KilnTallyExit.checkFailed.rawValue)
            }
        }
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
