import Foundation
import KilnTallyCore
import Tally
import TestSupport
import Testing

@Suite("Hash chain")
struct HashChainTests {
    /// A node's ledger in miniature: tickets and shift reports sealed into a chain, events between them unchained.
    static func sampleLedger(count: Int = 12) throws -> [[String: JSONValue]] {
        var previous = HashChain.genesis
        var records: [[String: JSONValue]] = []
        for n in 0..<count {
            var record: [String: JSONValue]
            switch n % 4 {
            case 0, 2:
                let net = Mass(kilograms: 19_220) + Mass(grams: Int64(n) * 1_250)
                record = ["schema": "kilntally.ticket/1", "id": .string("T-\(1000 + n)"), "material": "MSW",
                          "vehicle": "浙A·12345", "gross_kg": .string((net + Mass(kilograms: 12_260)).kilogramsString),
                          "tare_kg": "12260.000", "net_kg": .string(net.kilogramsString), "flags": ["N"], "revision": 0]
            case 1:
                record = ["schema": "kilntally.event/1", "id": .string("E-\(n)"), "kind": "device_down", "device": "bw1"]
            default:
                record = ["schema": "kilntally.shift-report/1", "id": .string("2026-11-23/B#\(n)"), "revision": .integer(Int64(n / 4)),
                          "crew": "甲", "streams": [["name": "msw-calciner", "fed_t": "84.000000", "flag": "N"]]]
            }
            if record["schema"]?.stringValue != "kilntally.event/1" {
                record = try HashChain.seal(record, after: previous)
                previous = record["hash"]!.stringValue!
            }
            records.append(record)
        }
        return records
    }

    static func stored(_ records: [[String: JSONValue]]) throws -> [[UInt8]] {
        try records.map { try CanonicalJSON.serialize(.object($0)) }
    }

    @Test func sealAddsPrevHashAndTheHashOfEverythingElse() throws {
        let record: [String: JSONValue] = ["schema": "kilntally.ticket/1", "id": "T-1", "net_kg": "19220.000"]
        let sealed = try HashChain.seal(record, after: HashChain.genesis)
        #expect(sealed["prev_hash"] == .string(String(repeating: "0", count: 64)))
        var content = record
        content["prev_hash"] = .string(HashChain.genesis)
        let expected = SHA256.hash(try CanonicalJSON.serialize(.object(content))).hex
        #expect(sealed["hash"] == .string(expected))
        #expect(HashChain.isHash(expected) && sealed.count == record.count + 2)
        // prev_hash is part of what is hashed; hash is not.
        let other = try HashChain.seal(record, after: expected)
        #expect(other["hash"] != sealed["hash"])
        var withWrongHash = sealed
        withWrongHash["hash"] = .string(String(repeating: "f", count: 64))
        #expect(try HashChain.hash(of: withWrongHash) == expected)
    }

    @Test func sealRefusesMisuse() {
        #expect(throws: HashChain.SealError.alreadySealed) {
            try HashChain.seal(["hash": .string(HashChain.genesis)], after: HashChain.genesis)
        }
        #expect(throws: HashChain.SealError.alreadySealed) { try HashChain.seal(["prev_hash": "x"], after: HashChain.genesis) }
        #expect(throws: HashChain.SealError.notAHash("ABC")) { try HashChain.seal(["a": 1], after: "ABC") }
        #expect(throws: HashChain.SealError.notAHash(String(repeating: "A", count: 64))) {
            try HashChain.seal(["a": 1], after: String(repeating: "A", count: 64))
        }
        #expect(throws: HashChain.SealError.self) { try HashChain.seal(["a": .integer(1 << 54)], after: HashChain.genesis) }
    }

    @Test func anIntactChainVerifies() throws {
        let records = try Self.sampleLedger()
        #expect(HashChain.firstMismatch(in: try Self.stored(records)) == nil)
        var verifier = ChainVerifier()
        for bytes in try Self.stored(records) { _ = verifier.check(bytes) }
        #expect(verifier.chained == 9 && verifier.unchained == 3 && verifier.faults == 0)
        #expect(verifier.head == records.last!["hash"]?.stringValue)
        // Stored in any JSON spelling (Python's key order, escapes, whitespace) it is the same chain: the hash is
        // over the canonical form, not over the stored bytes.
        var random = RandomJSON(rng: SplitMix64(seed: 1))
        #expect(HashChain.firstMismatch(in: records.map { random.scrambled(.object($0)) }) == nil)
    }

    @Test func aChangedDigitOfAMassIsAWrongHash() throws {
        let records = try Self.sampleLedger()
        var stored = try Self.stored(records)
        let text = String(decoding: stored[4], as: UTF8.self)
        let tampered = text.replacingOccurrences(of: "\"net_kg\":\"19225.000\"", with: "\"net_kg\":\"19226.000\"")
        #expect(tampered != text)
        stored[4] = Array(tampered.utf8)
        let mismatch = try #require(HashChain.firstMismatch(in: stored))
        #expect(mismatch.index == 4)
        guard case .wrongHash(let storedHash, let computed) = mismatch.fault else { Issue.record("\(mismatch.fault)"); return }
        #expect(storedHash != computed && text.contains(storedHash))
        // The verifier carries on from the stored hash: one changed record is one fault.
        var verifier = ChainVerifier()
        let outcomes = stored.map { verifier.check($0) }
        #expect(verifier.faults == 1 && verifier.chained == 8)
        #expect(outcomes[5] == .unchained && outcomes[6] == .chained(hash: records[6]["hash"]!.stringValue!))
    }

    @Test func aDroppedRecordIsABrokenLink() throws {
        var stored = try Self.stored(try Self.sampleLedger())
        let dropped = try CanonicalJSON.parse(stored.remove(at: 6))["hash"]!.stringValue!
        let mismatch = try #require(HashChain.firstMismatch(in: stored))
        #expect(mismatch.index == 6)
        #expect(mismatch.fault == .brokenLink(expected: try CanonicalJSON.parse(stored[4])["hash"]!.stringValue!, found: dropped))
        // Dropping an unchained event is not a chain fault (the ledger's sequence numbers show it).
        var withoutEvent = try Self.stored(try Self.sampleLedger())
        withoutEvent.remove(at: 5)
        #expect(HashChain.firstMismatch(in: withoutEvent) == nil)
    }

    @Test func twoReorderedRecordsAreABrokenLink() throws {
        var stored = try Self.stored(try Self.sampleLedger())
        stored.swapAt(2, 3)
        let mismatch = try #require(HashChain.firstMismatch(in: stored))
        #expect(mismatch.index == 2)
        guard case .brokenLink = mismatch.fault else { Issue.record("\(mismatch.fault)"); return }
    }

    @Test func aChangedPrevHashOrInsertedRecordIsDetected() throws {
        let records = try Self.sampleLedger()
        var relinked = records
        relinked[3]["prev_hash"] = records[0]["hash"]
        #expect(HashChain.firstMismatch(in: try Self.stored(relinked))?.index == 3)
        // An inserted record, correctly sealed after its predecessor, breaks the link of the one after it.
        var inserted = records
        inserted.insert(try HashChain.seal(["schema": "kilntally.ticket/1", "id": "T-forged", "net_kg": "1.000"],
                                           after: records[2]["hash"]!.stringValue!), at: 3)
        let mismatch = HashChain.firstMismatch(in: try Self.stored(inserted))
        #expect(mismatch?.index == 4)
    }

    @Test func strippingTheHashDoesNotUnchainATicket() throws {
        // The newest ticket with hash and prev_hash removed (and its mass changed): no later record would show it,
        // so the verifier decides by schema that a ticket must be chained.
        var records = try Self.sampleLedger(count: 9)
        records[8]["hash"] = nil
        records[8]["prev_hash"] = nil
        records[8]["net_kg"] = "1.000"
        let mismatch = HashChain.firstMismatch(in: try Self.stored(records))
        #expect(mismatch?.index == 8 && mismatch?.fault == .missingHash)
        records[8]["prev_hash"] = .string(HashChain.genesis)
        #expect(HashChain.firstMismatch(in: try Self.stored(records))?.fault == .missingHash)
        // An unknown record kind with a hash is checked too.
        let odd = try HashChain.seal(["schema": "kilntally.correction/1", "id": "C-1"], after: HashChain.genesis)
        var verifier = ChainVerifier()
        #expect(verifier.check(odd) == .chained(hash: odd["hash"]!.stringValue!))
    }

    @Test("records that cannot be verified are faults", arguments: [
        ("{\"schema\":\"kilntally.ticket/1\",\"mass\":1.5}", "not canonical-parsable JSON: byte 38: floating-point"),
        ("{\"a\":1,\"a\":1}", "not canonical-parsable JSON: byte 7: duplicate member name"),
        ("{\"a\":\"\\ud800\"}", "not canonical-parsable JSON: byte 6: high surrogate"),
        ("{\"a\":1} trailing", "not canonical-parsable JSON: byte 8: 8 byte(s) after"),
        ("[1,2]", "not a JSON object"),
        ("{\"schema\":\"kilntally.shift-report/1\",\"hash\":\"ABC\"}", "\"hash\" is missing or not 64 lowercase hex digits"),
        ("{\"hash\":\"\(HashChain.genesis)\"}", "\"prev_hash\" is missing or not 64 lowercase hex digits"),
    ])
    func unverifiable(text: String, reason: String) {
        var verifier = ChainVerifier()
        guard case .fault(let fault) = verifier.check(Array(text.utf8)) else { Issue.record("accepted \(text)"); return }
        #expect(fault.description.hasPrefix(reason), "\(fault)")
    }

    @Test func aChainWhoseBeginningWasRemovedVerifiesFromItsAnchor() throws {
        let stored = Array(try Self.stored(try Self.sampleLedger()).dropFirst(3))
        #expect(HashChain.firstMismatch(in: stored)?.fault
                == .brokenLink(expected: HashChain.genesis, found: try CanonicalJSON.parse(stored[0])["prev_hash"]!.stringValue!))
        var verifier = ChainVerifier(start: .anyAnchor)
        #expect(stored.allSatisfy { if case .fault = verifier.check($0) { false } else { true } })
        #expect(verifier.anchor == (try CanonicalJSON.parse(stored[0])["prev_hash"]!.stringValue!) && verifier.faults == 0)
    }

    /// The whole chain recomputed by Python (rfc8785 + hashlib) from records exported as `store dump --ledger --json`
    /// lines: every hash must agree with the one this module sealed, every link must hold; tampered copies must be
    /// found at the same record as by `ChainVerifier`.
    @Test func pythonRecomputesTheWholeChain() async throws {
        var records = try Self.sampleLedger(count: 40)
        // Strings JCS implementations get wrong, in sealed records.
        records[0] = try HashChain.seal(["schema": "kilntally.ticket/1", "id": "T-unicode", "material": "生活垃圾 \u{1F69B}",
                                         "note": "\u{2028}\u{7F}\u{1F}\"\\/\t", "\u{FB01}": 1, "\u{1F600}": 2, "e\u{301}": 3],
                                        after: HashChain.genesis)
        records = try Self.resealed(records)
        let python = try await JCSPeer.run("chain", input: try Self.dumpLines(records))
        #expect(python.count == records.count)
        for (n, record) in records.enumerated() {
            if let hash = record["hash"]?.stringValue {
                #expect(python[n] == "\(n + 1) chained \(hash) ok")
            } else {
                #expect(python[n] == "\(n + 1) unchained")
            }
        }

        var tampered = records
        tampered[10]["net_kg"] = "19232.501"
        var verifier = ChainVerifier()
        let firstSwift = try Self.stored(tampered).firstIndex { if case .fault = verifier.check($0) { true } else { false } }
        let tamperedPython = try await JCSPeer.run("chain", input: try Self.dumpLines(tampered))
        let firstPython = tamperedPython.firstIndex { !$0.hasSuffix(" ok") && !$0.hasSuffix(" unchained") }
        #expect(firstSwift == 10 && firstPython == 10)
        #expect(tamperedPython[10].hasSuffix("wrong-hash") && tamperedPython[11...].allSatisfy { !$0.contains("broken") })
    }

    /// Seals the chained records again in order (after one was replaced), from genesis.
    static func resealed(_ records: [[String: JSONValue]]) throws -> [[String: JSONValue]] {
        var previous = HashChain.genesis
        return try records.map { record in
            guard record["hash"] != nil else { return record }
            var content = record
            content["hash"] = nil
            content["prev_hash"] = nil
            let sealed = try HashChain.seal(content, after: previous)
            previous = sealed["hash"]!.stringValue!
            return sealed
        }
    }

    /// Records as `kilntally store dump --ledger --json` prints them: seq, time, type, and the record as a string.
    static func dumpLines(_ records: [[String: JSONValue]]) throws -> [[UInt8]] {
        try records.enumerated().map { n, record in
            var w = JSONWriter()
            w.beginObject()
            w.field("seq", n + 1)
            w.field("time", "2026-11-23T01:00:00Z")
            w.field("type", "record")
            w.field("body", try CanonicalJSON.string(.object(record)))
            w.endObject()
            return Array(w.string.utf8)
        }
    }
}
