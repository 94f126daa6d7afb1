import Foundation
import KilnTallyCore
import Logging
import RingStore
import TestSupport
import Testing

/// `kilntally ledger verify` on real ledgers written by the RingStore `Ledger` actor. The records are sealed by the
/// independent implementation (Python: rfc8785 + hashlib, Tests/peers/jcs_peer.py) and stored in Python's own JSON
/// spelling, so the CLI's verdict also shows that both sides agree on JCS and SHA-256. (Records sealed by Swift are
/// checked by Python in TallyTests' hash-chain suite.)
@Suite("ledger verify", .serialized)
struct LedgerVerifyCommandTests {
    struct Sealed {
        var body: [UInt8]
        var object: [String: Any]
        var schema: String { object["schema"] as! String }
        var id: String { object["id"] as! String }
        var hash: String? { object["hash"] as? String }
        /// The ledger record type: "kilntally.ticket/1" → "ticket".
        var type: String { String(schema.dropFirst("kilntally.".count).prefix { $0 != "/" }) }
    }

    static func sealedByPython(seed: Int, count: Int) async throws -> [Sealed] {
        try await JCSPeer.run("seal", input: [Array("\(seed) \(count)".utf8)]).map { line in
            Sealed(body: Array(line.utf8), object: try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any])
        }
    }

    static func writeLedger(_ records: [Sealed], to dir: String, times: (Int) -> UTCInstant? = { _ in nil }) async throws -> Ledger {
        var logger = Logger(label: "ledger-verify-test")
        logger.logLevel = .critical
        let ledger = try await Ledger(directory: dir, logger: logger)
        for (n, r) in records.enumerated() { try await ledger.append(type: r.type, body: r.body, time: times(n)) }
        return ledger
    }

    func kilntally(_ args: [String], in dir: TemporaryDirectory) async throws -> (status: Int32, output: String) {
        let p = try PeerProcess(name: "kilntally-\(UUID().uuidString.prefix(6))", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: args, logDirectory: dir.path)
        return (try await p.waitForExit(timeout: .seconds(30)), p.log())
    }

    func verifyJSON(_ state: TemporaryDirectory) async throws -> (Int32, [String: Any]) {
        let (status, out) = try await kilntally(["ledger", "verify", "--json", "--state-dir", state.path], in: state)
        let object = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        return (status, try #require(object, "\(out)"))
    }

    @Test func anIntactLedgerVerifiesAndPythonRecomputesItsExport() async throws {
        let state = try TemporaryDirectory()
        let records = try await Self.sealedByPython(seed: 7, count: 40)
        let chained = records.filter { $0.hash != nil }
        #expect(chained.count > 10 && chained.count < 40)
        await (try await Self.writeLedger(records, to: state.file("ledger"))).close()

        let (status, out) = try await kilntally(["ledger", "verify", "--state-dir", state.path], in: state)
        #expect(status == 0, "\(out)")
        #expect(out.contains("records        40 (sequence 1...40)"))
        #expect(out.contains("chained        \(chained.count) intact (from genesis)"))
        #expect(out.contains("unchained      \(40 - chained.count)"))
        let lastChained = records.lastIndex { $0.hash != nil }!
        #expect(out.contains("head           \(chained.last!.hash!)  seq \(lastChained + 1) (id \(chained.last!.id))"), "\(out)")
        #expect(out.hasSuffix("ok: chain intact\n"))

        let (jsonStatus, json) = try await verifyJSON(state)
        #expect(jsonStatus == 0 && json["intact"] as? Bool == true && json["bad_records"] as? Int == 0)
        #expect(json["chained"] as? Int == chained.count && json["head_hash"] as? String == chained.last!.hash)

        // The ledger exported by `store dump --ledger --json`, recomputed by Python record by record.
        let (dumpStatus, dump) = try await kilntally(["store", "dump", "--ledger", "--json", "--state-dir", state.path], in: state)
        #expect(dumpStatus == 0)
        let python = try await JCSPeer.run("chain", input: dump.split(separator: "\n").map { Array($0.utf8) })
        #expect(python == records.enumerated().map { n, r in r.hash.map { "\(n + 1) chained \($0) ok" } ?? "\(n + 1) unchained" })
    }

    @Test func aTamperedDigitBehindAValidFrameChecksumIsNamed() async throws {
        let state = try TemporaryDirectory()
        let records = try await Self.sealedByPython(seed: 11, count: 30)
        await (try await Self.writeLedger(records, to: state.file("ledger"))).close()
        let tickets = records.indices.filter { records[$0].type == "ticket" }
        let target = tickets[2]
        let id = records[target].id

        // Change one digit of the ticket's net mass in the segment file and give the frame a valid CRC again.
        let segments = state.file("ledger/segments")
        let segment = segments + "/" + (try FileManager.default.contentsOfDirectory(atPath: segments).first { $0.hasSuffix(".ktl") }!)
        var file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment)))
        var offset = SegmentHeader.size
        var patched = false
        while offset + 8 <= file.count, !patched {
            let length = file[offset..<offset + 4].reversed().reduce(0) { $0 << 8 | Int($1) }
            let body = offset + 8..<offset + 8 + length
            if let idAt = file[body].firstRange(of: Array("\"id\": \"\(id)\"".utf8)),
               let massAt = file[idAt.upperBound..<body.upperBound].firstRange(of: Array("\"net_kg\": \"".utf8)) {
                let digit = massAt.upperBound
                file[digit] = file[digit] == UInt8(ascii: "9") ? UInt8(ascii: "1") : file[digit] + 1
                let crc = CRC32C.checksum(file[body])
                for i in 0..<4 { file[offset + 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
                patched = true
            }
            offset = body.upperBound
        }
        #expect(patched)
        try Data(file).write(to: URL(fileURLWithPath: segment))

        // The frame checks out, so the store sees nothing wrong; the chain does.
        let storage = try StoreInspector.verifyLedger(directory: state.file("ledger"))
        #expect(storage.isClean && storage.readings == 30, "\(storage.damage)")
        let (status, out) = try await kilntally(["ledger", "verify", "--state-dir", state.path], in: state)
        #expect(status == 1, "\(out)")
        #expect(out.contains("FIRST BAD      seq \(target + 1) (id \(id)) ticket: wrong hash: stored \(records[target].hash!)"), "\(out)")
        #expect(out.contains("bad records    1") && out.hasSuffix("chain broken\n"))
        let (_, json) = try await verifyJSON(state)
        let bad = try #require(json["first_bad"] as? [String: Any])
        #expect(json["intact"] as? Bool == false && bad["seq"] as? Int == target + 1 && bad["id"] as? String == id)
        #expect(bad["fault"] as? String == "wrong_hash" && bad["type"] as? String == "ticket")
        #expect(try Data(contentsOf: URL(fileURLWithPath: segment)) == Data(file), "verify is read-only")

        // A flipped byte that the frame checksum does catch: reported as storage damage, and the record it hides
        // leaves a gap in the chain.
        file[SegmentHeader.size + 8 + 30] ^= 0x01
        try Data(file).write(to: URL(fileURLWithPath: segment))
        let (damagedStatus, damaged) = try await kilntally(["ledger", "verify", "--state-dir", state.path], in: state)
        #expect(damagedStatus == 1 && damaged.contains("DAMAGE") && damaged.contains("bad checksum"), "\(damaged)")
    }

    @Test func aDroppedRecordIsABrokenLinkAtTheNextChainedRecord() async throws {
        let state = try TemporaryDirectory()
        var records = try await Self.sealedByPython(seed: 3, count: 30)
        let chained = records.indices.filter { records[$0].hash != nil }
        let dropped = records.remove(at: chained[4])
        let next = chained[5] - 1  // its index after the removal
        await (try await Self.writeLedger(records, to: state.file("ledger"))).close()
        let (status, out) = try await kilntally(["ledger", "verify", "--state-dir", state.path], in: state)
        #expect(status == 1)
        #expect(out.contains("FIRST BAD      seq \(next + 1) (id \(records[next].id)) \(records[next].type): broken link: prev_hash \(dropped.hash!)"),
                "\(out)")
    }

    @Test func aLedgerWhoseOldestMonthWentToRetentionVerifiesFromItsAnchor() async throws {
        let state = try TemporaryDirectory()
        let records = try await Self.sealedByPython(seed: 5, count: 24)
        // Twelve records in January 2026, twelve in February: the ledger rolls its segment at the month.
        let ledger = try await Self.writeLedger(records, to: state.file("ledger")) { n in
            UTCInstant(nanosecondsSinceEpoch: (n < 12 ? 1_768_435_200 : 1_771_113_600) * 1_000_000_000)
        }
        try await ledger.setCursor("uplink", to: 24)
        let removed = try await ledger.applyRetention(now: UTCInstant(nanosecondsSinceEpoch: 1_956_528_000 * 1_000_000_000))
        await ledger.close()
        #expect(removed == 12)
        let anchor = records[..<12].last { $0.hash != nil }!.hash!

        let (status, out) = try await kilntally(["ledger", "verify", "--state-dir", state.path], in: state)
        #expect(status == 0, "\(out)")
        #expect(out.contains("records        12 (sequence 13...24)"))
        #expect(out.contains("(anchored at \(anchor), records before 13 removed)"), "\(out)")
    }

    @Test func noLedgerIsAnError() async throws {
        let state = try TemporaryDirectory()
        let (status, out) = try await kilntally(["ledger", "verify", "--state-dir", state.path], in: state)
        #expect(status == 1 && out.contains("ledger verify: \(state.path)/ledger: ") && out.contains("No such file"), "\(out)")
    }
}
