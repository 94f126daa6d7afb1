import Foundation
import KilnTallyCore
import Logging
@testable import RingStore
import Synchronization
import TestSupport
import Testing

let quietLogger: Logger = {
    var l = Logger(label: "ring-test")
    l.logLevel = .critical
    return l
}()

func openRing(_ fs: SimulatedFileSystem, _ options: RingStore.Options = .init()) async throws -> RingStore {
    try await RingStore(directory: "/state/readings", options: options, fs: fs, clock: ManualClock(start: UTCInstant(secondsSinceEpoch: 1_790_000_000)),
                        bootID: Array(repeating: 7, count: 16), logger: quietLogger)
}

/// Flips a bit in the first frame of the segment at `path` and removes its index (as after a crash before the index
/// was written), so the next open scans the segment and finds the damage.
func damageFirstFrame(_ fs: SimulatedFileSystem, path: String) throws {
    try fs.remove(path + ".idx")
    var bytes = fs.contents(of: path)!
    bytes[SegmentHeader.size + 20] ^= 0x40
    fs.overwrite(path, with: bytes)
}

/// Everything the store holds, in order.
func everything(_ store: RingStore) async throws -> [(seq: UInt64, reading: Reading)] {
    var out: [(seq: UInt64, reading: Reading)] = []
    var after: UInt64 = 0
    while true {
        let batch = try await store.read(after: after, limit: 5000, filter: nil)
        guard let last = batch.readings.last else { return out }
        out += batch.readings
        after = last.seq
    }
}

@Suite("Ring store", .serialized)
struct RingStoreTests {
    @Test("append, read back exactly, sequence numbers continue across reopen")
    func roundTripAndReopen() async throws {
        let fs = SimulatedFileSystem()
        var store = try await openRing(fs)
        let r1 = try await store.append((1...500).map(sampleReading))
        #expect(r1 == 1...500)
        await store.close()
        store = try await openRing(fs)
        #expect(await store.lastSequence == 500)
        #expect(try await store.append((501...600).map(sampleReading)) == 501...600)
        let all = try await everything(store)
        #expect(all.map(\.seq) == Array(1...600))
        #expect(all.allSatisfy { $0.reading == sampleReading($0.seq) })
        await store.close()
    }

    @Test("submit does not make readings visible before they are durable")
    func readersSeeDurableOnly() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options()
        options.syncInterval = .seconds(3600)
        let store = try await openRing(fs, options)
        let range = store.submit((1...10).map(sampleReading))
        #expect(range == 1...10)
        #expect(try await store.read(after: 0, limit: 100, filter: nil).readings.isEmpty)
        await store.commit()
        #expect(try await store.read(after: 0, limit: 100, filter: nil).readings.count == 10)
        await store.close()
    }

    @Test("a frame read a batch at a time is read and decoded once, also with two readers at their own pace")
    func batchedReadsDecodeAFrameOnce() async throws {
        let fs = CountingFileIO(SimulatedFileSystem())
        let store = try await RingStore(directory: "/state/readings", fs: fs, clock: ManualClock(start: UTCInstant(secondsSinceEpoch: 1_790_000_000)),
                                        bootID: Array(repeating: 7, count: 16), logger: quietLogger)
        try await store.append((1...1000).map(sampleReading))  // one commit, one frame
        fs.resetReads()
        var got: [(seq: UInt64, reading: Reading)] = []
        while true {
            let batch = try await store.read(after: got.last?.seq ?? 0, limit: 200, filter: nil).readings
            guard !batch.isEmpty else { break }
            got += batch
        }
        #expect(got.map(\.seq) == Array(1...1000))
        #expect(got.allSatisfy { $0.reading == sampleReading($0.seq) })
        #expect(fs.reads == 1, "the frame was read \(fs.reads) times for 5 batches")

        // The uplink and the tally read different frames in turns: neither makes the other decode again.
        try await store.append((1001...2000).map(sampleReading))
        fs.resetReads()
        var (a, b): (UInt64, UInt64) = (0, 1000)
        while a < 1000 || b < 2000 {
            if a < 1000 {
                let r = try await store.read(after: a, limit: min(150, Int(1000 - a)), filter: nil).readings
                #expect(r.map(\.seq) == Array((a + 1)..<(a + 1 + UInt64(r.count))) && r.allSatisfy { $0.reading == sampleReading($0.seq) })
                a = r.last?.seq ?? 1000
            }
            if b < 2000 {
                let r = try await store.read(after: b, limit: 110, filter: nil).readings
                #expect(r.map(\.seq) == Array((b + 1)..<(b + 1 + UInt64(r.count))) && r.allSatisfy { $0.reading == sampleReading($0.seq) })
                b = r.last?.seq ?? 2000
            }
        }
        #expect(fs.reads == 1, "only the new frame is read: \(fs.reads)")
        await store.close()
    }

    @Test("power cut at random moments: everything reported durable survives, numbers never go back", arguments: 0..<40)
    func powerCut(seed: UInt64) async throws {
        let fs = SimulatedFileSystem()
        var rng = SplitMix64(seed: seed &* 7919 &+ 1)
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 4096  // roll often: segment creation is where a missing directory sync would show
        options.syncInterval = .seconds(3600)
        var durableUpTo: UInt64 = 0
        var handedOut: UInt64 = 0
        for round in 0..<3 {
            let store = try await openRing(fs, options)
            var next = await store.lastSequence + 1
            #expect(next > durableUpTo, "round \(round): numbering went back")
            for _ in 0..<Int(rng.next() % 8 + 1) {
                let n = UInt64(rng.next() % 120 + 1)
                let start = next
                let range = store.submit((0..<n).map { sampleReading(start + $0) })!
                #expect(range.lowerBound == start)
                next = range.upperBound + 1
                handedOut = range.upperBound
                if rng.next() % 3 != 0 {
                    try await store.waitUntilDurable(range.upperBound)
                    durableUpTo = range.upperBound
                }
            }
            // Some submitted readings are still in flight when the power goes: they may be lost, nothing earlier.
            _ = store.submit((0..<5).map { sampleReading(handedOut + 1 + $0) })
            let what = fs.powerCut(seed: rng.next())
            let reopened = try await openRing(fs, options)
            let all = try await everything(reopened)
            let seqs = all.map(\.seq)
            #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count, "strictly increasing, no duplicates")
            #expect(all.allSatisfy { $0.reading == sampleReading($0.seq) }, "intact")
            let present = Set(seqs)
            let missing = (1...max(durableUpTo, 1)).filter { durableUpTo > 0 && !present.contains($0) }
            #expect(missing.isEmpty, "seed \(seed) round \(round): durable readings lost: \(missing.prefix(10))…\n\(what)")
            await reopened.close()
        }
    }

    @Test("a failed fsync is not reported durable, the readings are retried and kept")
    func failedSyncIsRetried() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options()
        options.syncInterval = .seconds(3600)
        let store = try await openRing(fs, options)
        try await store.append((1...5).map(sampleReading))
        fs.failNext("fdatasync", errno: EIO)
        let range = store.submit((6...9).map(sampleReading))!
        await store.commit()
        #expect(store.lastDurableSequence == 5, "not durable after a failed sync")
        #expect(await store.statistics().lastError != nil)
        await store.commit()
        #expect(store.lastDurableSequence == range.upperBound)
        // The rolled-back frame must not reappear twice after a power cut.
        fs.powerCut(seed: 3)
        let reopened = try await openRing(fs, options)
        #expect(try await everything(reopened).map(\.seq) == Array(1...9))
        await reopened.close()
    }

    @Test("disk full: readings queue in memory (bounded, oldest lost first, counted) and land when space returns")
    func diskFull() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options()
        options.syncInterval = .seconds(3600)
        options.maxPendingReadings = 50
        let store = try await openRing(fs, options)
        var events = store.events.makeAsyncIterator()
        fs.setDiskFull(true)
        store.submit((1...30).map(sampleReading))
        await store.commit()
        guard case .writeFailed(let message) = await events.next() else {
            Issue.record("no write-failed event")
            return
        }
        #expect(message.contains("No space left on device"))
        store.submit((31...70).map(sampleReading))  // 70 pending > 50: the oldest 20 are lost
        await store.commit()
        let stats = await store.statistics()
        #expect(stats.droppedInMemory == 20)
        #expect(stats.pendingReadings == 50)
        fs.setDiskFull(false)
        await store.commit()
        #expect(try await everything(store).map(\.seq) == Array(21...70))
        await store.close()
    }

    @Test("the byte bound drops whole oldest segments, counts them, raises an event, and readers see the gap")
    func capacity() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 64 << 10)
        options.segmentBytes = 8 << 10
        options.syncInterval = .seconds(3600)
        let store = try await openRing(fs, options)
        var events = store.events.makeAsyncIterator()
        var next: UInt64 = 1
        for _ in 0..<200 {  // several times the capacity
            try await store.append((next..<next + 100).map(sampleReading))
            next += 100
        }
        let stats = await store.statistics()
        #expect(stats.bytes <= options.maxBytes + options.segmentBytes + 4096)
        #expect(stats.droppedReadings > 0)
        #expect(stats.droppedReadings + UInt64(stats.readings) == next - 1)
        guard case .dropped(let n, let first, _) = await events.next() else {
            Issue.record("no drop event")
            return
        }
        #expect(n > 0 && first == 1)
        // A cursor pointing at dropped data gets the oldest available readings and the gap.
        let result = try await store.read(after: 0, limit: 10, filter: nil)
        #expect(result.gap?.lowerBound == 1)
        #expect(result.readings.first?.seq == result.gap!.upperBound + 1)
        await store.close()
    }

    @Test("corruption: a flipped byte mid-file costs one frame; the original is kept aside, the rest stays readable")
    func flippedByteMidFile() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 4096
        var store = try await openRing(fs, options)
        for i in 0..<10 { try await store.append((UInt64(i * 100 + 1)...UInt64(i * 100 + 100)).map(sampleReading)) }
        await store.close()
        let dir = "/state/readings/segments"
        let names = try fs.list(dir).filter { $0.hasSuffix(".krs") }.sorted()
        #expect(names.count >= 3)
        try damageFirstFrame(fs, path: dir + "/" + names[1])

        store = try await openRing(fs, options)
        let report = store.recoveryReport
        #expect(report.quarantined.count == 1)
        #expect(try fs.list(dir).contains { $0.hasSuffix(".quarantined") }, "kept aside, not deleted")
        let seqs = try await everything(store).map(\.seq)
        #expect(seqs.first == 1 && seqs.last == 1000, "segments before and after the damage are readable")
        #expect(seqs.count < 1000)
        let next = try await store.append([sampleReading(5000)])!
        #expect(next.lowerBound > 1000)
        await store.close()
    }

    @Test("damage found at two opens in a row: the second reservation does not restart the first, dropping loses only what it reports")
    func reservationAtTwoOpens() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 2048
        var store = try await openRing(fs, options)
        for i in 0..<10 { try await store.append((UInt64(i * 50 + 1)...UInt64(i * 50 + 50)).map(sampleReading)) }
        await store.close()
        let dir = "/state/readings/segments"
        func flipFirstFrame(ofSegment k: Int) throws {
            try damageFirstFrame(fs, path: dir + "/" + (try fs.list(dir).filter { $0.hasSuffix(".krs") }.sorted()[k]))
        }
        // The first open salvages a damaged segment and reserves the numbers it could have held: an empty segment
        // named after the next number makes the reservation durable.
        try flipFirstFrame(ofSegment: 1)
        store = try await openRing(fs, options)
        #expect(store.recoveryReport.skippedSequences > 0)
        let reservation = try fs.list(dir).filter { $0.hasSuffix(".krs") }.sorted().last!
        await store.close()
        // The next open finds other damage, reserving numbers again, below the first reservation: the empty segment
        // already floors numbering there. Starting it again would truncate it and list it twice in the log.
        try flipFirstFrame(ofSegment: 2)
        // A byte bound below any segment: each commit drops every segment but the one being written.
        options.maxBytes = 100
        store = try await openRing(fs, options)
        #expect(store.recoveryReport.skippedSequences > 0)
        let files = try fs.list(dir).filter { $0.hasSuffix(".krs") }
        #expect(await store.statistics().segments == files.count, "each segment file is in the log once: \(files.sorted())")
        let first = try #require(try await store.append([sampleReading(1)])).lowerBound
        #expect(first == UInt64(reservation.dropFirst(4).prefix(20))!, "numbering goes on at the reservation")
        // Less than a segment more: the first commit dropped every older segment, the reservation's among them. That
        // must not take the file these readings go to: they were reported durable, and never reported dropped.
        let events = store.events
        var next = first + 1
        for _ in 0..<3 {
            try await store.append((next..<next + 50).map(sampleReading))
            next += 50
        }
        await store.close()
        var dropped: [ClosedRange<UInt64>] = []
        for await event in events { if case .dropped(_, let a, let b) = event { dropped.append(a...b) } }
        store = try await openRing(fs, options)
        let present = Set(try await everything(store).map(\.seq))
        let lost = (first..<next).filter { n in !present.contains(n) && !dropped.contains { $0.contains(n) } }
        #expect(lost.isEmpty, "\(lost.count) readings gone without a drop being reported, from \(lost.first ?? 0) (dropped: \(dropped))")
        await store.close()
    }

    @Test("corruption at the tail, a truncated last segment, a zeroed page, a missing segment: open succeeds", arguments: ["tail-flip", "truncate", "zero-page", "missing"])
    func corruptionKinds(kind: String) async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 2048
        var store = try await openRing(fs, options)
        for i in 0..<12 { try await store.append((UInt64(i * 50 + 1)...UInt64(i * 50 + 50)).map(sampleReading)) }
        await store.close()
        let dir = "/state/readings/segments"
        let names = try fs.list(dir).filter { $0.hasSuffix(".krs") }.sorted()
        try #require(names.count >= 3, "the fixture needs several segments: \(names)")
        let last = dir + "/" + names.last!
        var bytes = fs.contents(of: last)!
        switch kind {
        case "tail-flip": bytes[bytes.count - 3] ^= 0xFF
        case "truncate": bytes.removeLast(37)
        case "zero-page":
            let page = min(bytes.count - 1, 4096)
            for i in max(SegmentHeader.size, page - 512)..<page { bytes[i] = 0 }
        default: try fs.remove(dir + "/" + names[1])
        }
        if kind != "missing" { fs.overwrite(last, with: bytes) }
        store = try await openRing(fs, options)
        let all = try await everything(store)
        #expect(!all.isEmpty)
        #expect(all.allSatisfy { $0.reading == sampleReading($0.seq) })
        #expect(all.map(\.seq) == all.map(\.seq).sorted())
        let next = try await store.append([sampleReading(9999)])!
        #expect(next.lowerBound > all.last!.seq)
        await store.close()
    }

    @Test("a segment of a newer format is refused with a clear message, never quarantined")
    func newerFormatRefused() async throws {
        let fs = SimulatedFileSystem()
        var store = try await openRing(fs)
        try await store.append([sampleReading(1)])
        await store.close()
        let dir = "/state/readings/segments"
        let path = dir + "/" + (try fs.list(dir).first { $0.hasSuffix(".krs") }!)
        var bytes = fs.contents(of: path)!
        bytes[4] = 9
        fs.overwrite(path, with: bytes)
        do {
            store = try await openRing(fs)
            Issue.record("opened a newer format")
            await store.close()
        } catch {
            #expect("\(error)".contains("format version 9 is newer"))
        }
        #expect(try fs.list(dir).allSatisfy { !$0.contains("quarantined") })
    }

    @Test("time-range reads and filters")
    func timeRange() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 4096
        let store = try await openRing(fs, options)
        try await store.append((1...1000).map(sampleReading))
        let from = sampleReading(200).time, to = sampleReading(299).time
        let got = try await store.read(from: from, to: to)
        #expect(got.map(\.seq) == Array(200...299))
        let onlyDev1 = try await store.read(from: from, to: to, filter: { $0.device == "dev1" })
        #expect(onlyDev1.map(\.seq) == Array(200...299).filter { $0 % 3 == 1 })
        await store.close()
    }

    @Test("cursors are durable and set the numbering floor")
    func cursors() async throws {
        let fs = SimulatedFileSystem()
        var store = try await openRing(fs)
        try await store.append((1...10).map(sampleReading))
        try await store.setCursor("uplink-readings", to: 10)
        await store.close()
        fs.powerCut(seed: 1)
        // Even with every segment gone, numbers continue above what a reader acknowledged.
        for name in try fs.list("/state/readings/segments") { try fs.remove("/state/readings/segments/" + name) }
        store = try await openRing(fs)
        #expect(try await store.cursor("uplink-readings") == 10)
        #expect(try await store.append([sampleReading(11)]) == 11...11)
        await store.close()
    }
}

@Suite("Ring store crash loop", .serialized)
struct RingStoreCrashLoopTests {
    /// KILNTALLY_LONG=1 runs 200 iterations (the long mode); the normal run does 20.
    static let iterations = ProcessInfo.processInfo.environment["KILNTALLY_LONG"] == "1" ? 200 : 20

    @Test("SIGKILL at random moments: every number reported durable is there and intact, no duplicates")
    func crashLoop() async throws {
        let dir = try TemporaryDirectory()
        let writer = try RepoPaths.builtProduct("RingStoreCrashWriter")
        let seed = UInt64(UInt32.random(in: 0...UInt32.max))
        var rng = SplitMix64(seed: seed)
        var durable: UInt64 = 0
        var recoveries: [String] = []
        for i in 0..<Self.iterations {
            let p = try PeerProcess(name: "writer-\(i)", executable: writer, arguments: [dir.file("ring")], logDirectory: dir.path)
            try await p.waitUntil("a first durable append", timeout: .seconds(20)) { p.log().contains("durable") }
            try await Task.sleep(for: .milliseconds(Int(rng.next() % 150)))
            p.killHard()
            let log = p.log().split(separator: "\n")
            let reported = log.compactMap { $0.hasPrefix("durable ") ? UInt64($0.dropFirst(8)) : nil }
            durable = max(durable, reported.max() ?? 0)
            // What the kill left, before this open's recovery changes it: kept if the iteration fails.
            try? FileManager.default.removeItem(atPath: dir.file("ring-as-killed"))
            try FileManager.default.copyItem(atPath: dir.file("ring"), toPath: dir.file("ring-as-killed"))

            let store = try await RingStore(directory: dir.file("ring"), logger: quietLogger)
            let report = store.recoveryReport
            let writerSaid = log.filter { !$0.hasPrefix("durable ") }
            if !report.isClean || !writerSaid.isEmpty {
                recoveries.append("iteration \(i): writer said \(writerSaid); recovery \(report)")
            }
            let all = try await everything(store)
            let seqs = all.map(\.seq)
            let contiguous = seqs == (0..<UInt64(seqs.count)).map { $0 + 1 }
            // A SIGKILL loses nothing the writer wrote (the page cache keeps it): recovery may cut a torn tail, but
            // damage — a quarantine, or numbers skipped for it — is a bug, and a hole in the numbers would follow.
            let noDamage = report.quarantined.isEmpty && report.skippedSequences == 0
            #expect(contiguous, "iteration \(i) (seed \(seed)): contiguous from 1, no duplicates")
            #expect(seqs.count >= Int(durable), "iteration \(i) (seed \(seed)): \(durable) reported durable, \(seqs.count) present")
            #expect(all.allSatisfy { $0.reading == sampleReading($0.seq) }, "iteration \(i): intact")
            #expect(noDamage, "iteration \(i) (seed \(seed)): recovery after a SIGKILL found damage: \(report)")
            await store.close()
            if !contiguous || seqs.count < Int(durable) || !noDamage {
                // Later iterations would only repeat it: keep the evidence (the store as killed and as recovered, the
                // writers' logs) and say what is in it.
                let kept = NSTemporaryDirectory() + "/ringstore-crashloop-\(seed)-\(i)"
                try? FileManager.default.copyItem(atPath: dir.path, toPath: kept)
                var jumps: [String] = []
                for (a, b) in zip(seqs, seqs.dropFirst()) where b != a + 1 { jumps.append("\(a) -> \(b)") }
                Issue.record("""
                    iteration \(i) (seed \(seed)): kept in \(kept); jumps in the numbers read: \(jumps)
                    as killed: \(Self.listing(dir.file("ring-as-killed/segments")))
                    as recovered: \(Self.listing(dir.file("ring/segments")))
                    recoveries and writer messages so far: \(recoveries)
                    """)
                break
            }
        }
        #expect(durable > 0)
    }

    /// The files of a segment directory with their sizes, for failure messages.
    static func listing(_ directory: String) -> String {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        return names.map { name in
            let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? -1
            return "\(name) \(size)"
        }.joined(separator: ", ")
    }
}

@Suite("Ring store write ordering")
struct WriteOrderingTests {
    @Test("nothing is reported durable before its fdatasync, and a new segment's directory entry is synced before use")
    func journalOrdering() async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 2048
        let store = try await openRing(fs, options)
        fs.clearJournal()
        var next: UInt64 = 1
        for _ in 0..<30 {
            try await store.append((next..<next + 40).map(sampleReading))
            next += 40
            // At the moment append returned: every write to a segment has a later sync of that segment.
            let journal = fs.journal
            for (i, line) in journal.enumerated() where line.hasPrefix("write /state/readings/segments/") {
                let path = String(line.split(separator: " ")[1])
                #expect(journal[(i + 1)...].contains("sync \(path)"), "unsynced write reported durable: \(line)")
            }
        }
        let journal = fs.journal
        let created = journal.enumerated().filter { $0.element.hasPrefix("create /state/readings/segments/seg-") && $0.element.hasSuffix(".krs") }
        #expect(created.count >= 5, "the test must roll segments")
        for (i, line) in created {
            let path = String(line.split(separator: " ")[1])
            let dirSync = journal[(i + 1)...].firstIndex(of: "syncdir /state/readings/segments")
            let firstFrame = journal[(i + 1)...].firstIndex { $0.hasPrefix("write \(path) ") && !$0.hasPrefix("write \(path) 0+") }
            #expect(dirSync != nil && firstFrame != nil && dirSync! < firstFrame!, "\(path): frames written before its directory entry was synced")
        }
        await store.close()
    }

    @Test("cursor files carry a magic and version; the skeleton's bare numbers still read; a newer version is refused")
    func cursorFormats() async throws {
        let fs = SimulatedFileSystem()
        var store = try await openRing(fs)
        try await store.setCursor("uplink", to: 42)
        let path = "/state/readings/cursors/uplink"
        #expect(String(decoding: fs.contents(of: path)!, as: UTF8.self) == "kilntally-cursor 1\n42\n")
        fs.overwrite(path, with: Array("17\n".utf8))
        #expect(try await store.cursor("uplink") == 17)
        fs.overwrite(path, with: Array("kilntally-cursor 9\n5\n".utf8))
        await #expect(throws: StoreError.self) { try await store.cursor("uplink") }
        await store.close()
        store = try await openRing(fs)
        await store.close()
    }
}

@Suite("Ring store segment indexes")
struct SegmentIndexTests {
    func filled(_ fs: SimulatedFileSystem) async throws -> RingStore.Options {
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 2048
        let store = try await openRing(fs, options)
        for i in 0..<20 { try await store.append((UInt64(i * 50 + 1)...UInt64(i * 50 + 50)).map(sampleReading)) }
        await store.close()
        return options
    }

    @Test("sealed segments get an index; reopening through the indexes gives exactly the same readings")
    func indexedReopen() async throws {
        let fs = SimulatedFileSystem()
        let options = try await filled(fs)
        let names = try fs.list("/state/readings/segments")
        let segments = names.filter { $0.hasSuffix(".krs") }.count
        #expect(names.filter { $0.hasSuffix(".krs.idx") }.count == segments - 1, "every sealed segment, not the active one")
        fs.clearJournal()
        let store = try await openRing(fs, options)
        let reads = fs.journal.filter { $0.hasPrefix("write") }
        #expect(reads.isEmpty, "opening wrote nothing")
        let all = try await everything(store)
        #expect(all.map(\.seq) == Array(1...1000))
        #expect(all.allSatisfy { $0.reading == sampleReading($0.seq) })
        await store.close()
    }

    @Test("a damaged index is ignored: the segment is scanned instead")
    func damagedIndex() async throws {
        let fs = SimulatedFileSystem()
        let options = try await filled(fs)
        let idx = "/state/readings/segments/" + (try fs.list("/state/readings/segments").sorted().first { $0.hasSuffix(".idx") }!)
        var bytes = fs.contents(of: idx)!
        bytes[10] ^= 0xFF
        fs.overwrite(idx, with: bytes)
        let store = try await openRing(fs, options)
        #expect(try await everything(store).map(\.seq) == Array(1...1000))
        await store.close()
    }

    @Test("a frame damaged after its segment was sealed: readers get a gap and go on; verify names it")
    func damageAfterSealing() async throws {
        let fs = SimulatedFileSystem()
        let options = try await filled(fs)
        let dir = "/state/readings/segments"
        let first = dir + "/" + (try fs.list(dir).sorted().first { $0.hasSuffix(".krs") }!)
        var bytes = fs.contents(of: first)!
        bytes[SegmentHeader.size + 8 + 5] ^= 0x01  // inside the first frame (readings 1...50)
        fs.overwrite(first, with: bytes)
        let store = try await openRing(fs, options)  // indexed: the damage is not seen at open
        let result = try await store.read(after: 0, limit: 100, filter: nil)
        #expect(result.gap == 1...50)
        #expect(result.readings.first?.seq == 51)
        await store.close()
        let v = try StoreInspector.verify(directory: "/state/readings", fs: fs)
        #expect(!v.isClean && v.damage.contains { $0.contains("checksum") })
    }
}

/// The same behaviours on both implementations behind the I/O choke point: the real POSIX file system (in a
/// temporary directory) and the simulated one the crash tests rely on. If they diverged, the power-cut tests
/// would be proving things about a file system that does not exist.
@Suite("Ring store conformance on both file systems")
struct RingStoreConformanceTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case posix, simulated
        var testDescription: String { rawValue }
    }

    final class Fixture {
        let fs: any FileIO
        let root: String
        private let temp: TemporaryDirectory?
        init(_ kind: Kind) throws {
            switch kind {
            case .posix:
                temp = try TemporaryDirectory()
                fs = PosixFileIO()
                root = temp!.path
            case .simulated:
                temp = nil
                fs = SimulatedFileSystem()
                root = "/conformance"
            }
        }
        func open(_ options: RingStore.Options = .init()) async throws -> RingStore {
            try await RingStore(directory: root + "/readings", options: options, fs: fs, logger: quietLogger)
        }
    }

    @Test(arguments: Kind.allCases)
    func roundTripReopenAndCursor(kind: Kind) async throws {
        let f = try Fixture(kind)
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 4096
        var store = try await f.open(options)
        for i in 0..<10 { try await store.append((UInt64(i * 100 + 1)...UInt64(i * 100 + 100)).map(sampleReading)) }
        try await store.setCursor("uplink", to: 640)
        await store.close()
        store = try await f.open(options)
        #expect(try await store.cursor("uplink") == 640)
        let rest = try await store.read(after: 640, limit: 1000, filter: nil)
        #expect(rest.readings.map(\.seq) == Array(641...1000) && rest.gap == nil)
        #expect(rest.readings.allSatisfy { $0.reading == sampleReading($0.seq) })
        #expect(try await store.append([sampleReading(1001)]) == 1001...1001)
        await store.close()
        let v = try StoreInspector.verify(directory: f.root + "/readings", fs: f.fs)
        #expect(v.isClean && v.readings == 1001 && v.firstSequence == 1 && v.lastSequence == 1001)
    }

    @Test(arguments: Kind.allCases)
    func boundDropsOldestWithGap(kind: Kind) async throws {
        let f = try Fixture(kind)
        var options = RingStore.Options(maxBytes: 32 << 10)
        options.segmentBytes = 4 << 10
        let store = try await f.open(options)
        for i in 0..<100 { try await store.append((UInt64(i * 50 + 1)...UInt64(i * 50 + 50)).map(sampleReading)) }
        let stats = await store.statistics()
        #expect(stats.bytes <= options.maxBytes + options.segmentBytes + 4096)
        #expect(stats.droppedReadings + UInt64(stats.readings) == 5000)
        let r = try await store.read(after: 0, limit: 5, filter: nil)
        #expect(r.gap?.lowerBound == 1 && r.readings.first?.seq == r.gap!.upperBound + 1)
        await store.close()
    }

    @Test(arguments: Kind.allCases)
    func tornTailIsCut(kind: Kind) async throws {
        let f = try Fixture(kind)
        var store = try await f.open()
        try await store.append((1...100).map(sampleReading))
        try await store.append((101...200).map(sampleReading))
        await store.close()
        // Cut the last frame short, as a power cut during its write would.
        let dir = f.root + "/readings/segments"
        let name = try f.fs.list(dir).first { $0.hasSuffix(".krs") }!
        let file = try f.fs.open(dir + "/" + name, create: false)
        let size = try f.fs.size(file, path: name)
        try f.fs.truncate(file, path: name, to: size - 7)
        try f.fs.sync(file, path: name)
        f.fs.close(file)
        store = try await f.open()
        #expect(store.recoveryReport.truncatedBytes > 0 && store.recoveryReport.quarantined.isEmpty)
        #expect(try await everything(store).map(\.seq) == Array(1...100))
        #expect(try await store.append([sampleReading(101)]) == 101...101)
        await store.close()
    }
}

@Suite("Ring store crashes during recovery")
struct RecoveryCrashTests {
    @Test("a power cut at any point of a salvage loses nothing undamaged", arguments: 0..<12)
    func crashDuringSalvage(seed: UInt64) async throws {
        let fs = SimulatedFileSystem()
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = 2048
        options.dictionaryRestatementBytes = 1  // every frame restates the series it depends on
        var store = try await openRing(fs, options)
        for i in 0..<12 { try await store.append((UInt64(i * 50 + 1)...UInt64(i * 50 + 50)).map(sampleReading)) }
        let before = try await everything(store)
        await store.close()
        let dir = "/state/readings/segments"
        let target = dir + "/" + (try fs.list(dir).filter { $0.hasSuffix(".krs") }.sorted()[1])
        try fs.remove(target + ".idx")  // scanned at open, so the damage is found and salvaged
        var bytes = fs.contents(of: target)!
        bytes[SegmentHeader.size + 8 + 3] ^= 0x20  // inside its first frame
        fs.overwrite(target, with: bytes)
        let stored = Set(before.map(\.seq))

        // The salvage's second rename (the copy into place) fails: the process is as good as dead there.
        fs.failNext("rename", errno: 5, skipping: 1)
        await #expect(throws: StoreError.self) { try await openRing(fs, options) }
        fs.powerCut(seed: seed)
        store = try await openRing(fs, options)
        let after = try await everything(store)
        // Only the damaged frame (50 readings) may be missing; everything else is there, intact, in order.
        let missing = stored.subtracting(after.map(\.seq))
        #expect(missing.count <= 50, "seed \(seed): \(missing.count) readings lost, more than the damaged frame")
        #expect(after.allSatisfy { $0.reading == sampleReading($0.seq) })
        #expect(try await store.append([sampleReading(9999)])!.lowerBound > 600, "no number handed out twice")
        await store.close()
    }

    @Test("SIGKILL after a write and before its sync, then a power cut: what the next open calls durable survives", arguments: 0..<12)
    func killThenPowerCut(seed: UInt64) async throws {
        let fs = SimulatedFileSystem()
        let log = try SegmentedLog<ReadingFrames>(fs: fs, directory: "/state/readings/segments", bootID: [], logger: quietLogger)
        try log.startSegment(first: 1, clockSynchronized: true, now: UTCInstant(secondsSinceEpoch: 0))
        var dictionary = SeriesDictionary()
        var body: [UInt8] = []
        let readings = (1...40).map(sampleReading)
        BatchCodec.encode(firstSequence: 1, readings, dictionary: &dictionary, into: &body)
        try log.write(frames: [(body, FrameSummary(firstSequence: 1, count: 40, minTime: readings.first!.time, maxTime: readings.last!.time))],
                      stateAfter: dictionary)
        fs.crashProcess()  // killed before log.sync(): the frame is only in the page cache

        let store = try await openRing(fs)
        let durable = store.lastDurableSequence
        await store.close()
        fs.powerCut(seed: seed)
        let reopened = try await openRing(fs)
        let seqs = try await everything(reopened).map(\.seq)
        #expect(seqs.count >= Int(durable), "seed \(seed): the previous open called 1...\(durable) durable; \(seqs.count) survived")
        await reopened.close()
    }
}

/// Forwards to a simulated file system and counts the reads (pread) the store makes.
final class CountingFileIO: FileIO {
    let base: SimulatedFileSystem
    private let readCount = Mutex(0)
    init(_ base: SimulatedFileSystem) { self.base = base }
    var reads: Int { readCount.withLock { $0 } }
    func resetReads() { readCount.withLock { $0 = 0 } }

    func read(_ file: FileID, path: String, count: Int, at offset: Int64) throws(StoreError) -> [UInt8] {
        readCount.withLock { $0 += 1 }
        return try base.read(file, path: path, count: count, at: offset)
    }
    func open(_ path: String, create: Bool) throws(StoreError) -> FileID { try base.open(path, create: create) }
    func close(_ file: FileID) { base.close(file) }
    func size(_ file: FileID, path: String) throws(StoreError) -> Int64 { try base.size(file, path: path) }
    func write(_ file: FileID, path: String, _ bytes: [UInt8], at offset: Int64) throws(StoreError) { try base.write(file, path: path, bytes, at: offset) }
    func sync(_ file: FileID, path: String) throws(StoreError) { try base.sync(file, path: path) }
    func truncate(_ file: FileID, path: String, to size: Int64) throws(StoreError) { try base.truncate(file, path: path, to: size) }
    func rename(_ from: String, to: String) throws(StoreError) { try base.rename(from, to: to) }
    func remove(_ path: String) throws(StoreError) { try base.remove(path) }
    func makeDirectories(_ path: String) throws(StoreError) { try base.makeDirectories(path) }
    func list(_ directory: String) throws(StoreError) -> [String] { try base.list(directory) }
    func syncDirectory(_ directory: String) throws(StoreError) { try base.syncDirectory(directory) }
}
