import KilnTallyCore
import Logging
@testable import RingStore
import Testing

@Suite("Ledger")
struct LedgerTests {
    let clock = ManualClock(start: UTCInstant(secondsSinceEpoch: 1_790_000_000))  // 2026-09-21

    func open(_ fs: SimulatedFileSystem, _ options: Ledger.Options = .init()) async throws -> Ledger {
        try await Ledger(directory: "/state/ledger", options: options, fs: fs, clock: clock, bootID: Array(repeating: 1, count: 16), logger: quietLogger)
    }

    @Test("every record is durable when append returns: a power cut right after keeps it")
    func appendIsDurable() async throws {
        let fs = SimulatedFileSystem()
        for round in 0..<20 {
            let ledger = try await open(fs)
            let seq = try await ledger.append(type: "ticket", body: Array("ticket \(round)".utf8))
            #expect(seq == UInt64(round + 1))
            fs.powerCut(seed: UInt64(round))
            let reopened = try await open(fs)
            let records = try await reopened.read(after: 0, limit: 100)
            #expect(records.map(\.sequence) == Array(1...UInt64(round + 1)))
            #expect(records.last?.body == Array("ticket \(round)".utf8))
            #expect(records.last?.type == "ticket")
            await reopened.close()
        }
    }

    @Test("segments roll at the start of a calendar month")
    func monthlySegments() async throws {
        let fs = SimulatedFileSystem()
        let ledger = try await open(fs)
        for day in 0..<70 {
            try await ledger.append(type: "shift-report", body: [UInt8(day)], time: UTCInstant(secondsSinceEpoch: 1_790_000_000 + Int64(day) * 86_400))
        }
        let segments = try fs.list("/state/ledger/segments").filter { $0.hasSuffix(".ktl") }
        #expect(segments.count == 3, "September, October, November: \(segments)")
        #expect(try await ledger.read(after: 0, limit: 1000).count == 70)
        await ledger.close()
    }

    @Test("retention drops old months only after the uplink cursor passed them")
    func retentionWaitsForTheCursor() async throws {
        let fs = SimulatedFileSystem()
        var options = Ledger.Options()
        options.retention = .seconds(30 * 86_400)
        let ledger = try await open(fs, options)
        for day in 0..<100 {
            try await ledger.append(type: "shift-report", body: [UInt8(day)], time: UTCInstant(secondsSinceEpoch: 1_790_000_000 + Int64(day) * 86_400))
        }
        let now = UTCInstant(secondsSinceEpoch: 1_790_000_000 + 100 * 86_400)
        #expect(try await ledger.applyRetention(now: now) == 0, "no cursor: nothing confirmed delivered, nothing dropped")
        try await ledger.setCursor("uplink", to: 5)
        #expect(try await ledger.applyRetention(now: now) == 0, "the oldest month is not fully delivered yet")
        try await ledger.setCursor("uplink", to: 100)
        let removed = try await ledger.applyRetention(now: now)
        #expect(removed > 0)
        let left = try await ledger.read(after: 0, limit: 1000)
        #expect(left.first!.time >= UTCInstant(secondsSinceEpoch: 1_790_000_000 + 10 * 86_400))
        #expect(left.last!.sequence == 100)
        #expect(try await ledger.append(type: "ticket", body: []) == 101)
        await ledger.close()
    }

    @Test("a failed fsync is reported as a failure and the record does not come back")
    func failedSync() async throws {
        let fs = SimulatedFileSystem()
        let ledger = try await open(fs)
        try await ledger.append(type: "ticket", body: [1])
        fs.failNext("fdatasync", errno: 5)
        await #expect(throws: StoreError.self) { try await ledger.append(type: "ticket", body: [2]) }
        #expect(try await ledger.append(type: "ticket", body: [3]) == 2)
        fs.powerCut(seed: 9)
        let reopened = try await open(fs)
        #expect(try await reopened.read(after: 0, limit: 10).map(\.body) == [[1], [3]])
        await reopened.close()
    }

    @Test("a month's segment left empty by a failed write is replaced at the next month, not refused for ever")
    func emptySegmentAcrossMonths() async throws {
        let fs = SimulatedFileSystem()
        let ledger = try await open(fs)
        try await ledger.append(type: "ticket", body: [1], time: UTCInstant(secondsSinceEpoch: 1_790_000_000))  // September
        // October's first record: its segment is created (header written), then the record's write fails (disk full).
        fs.failNext("pwrite", errno: 28 /* ENOSPC */, skipping: 2)  // the sealed index, the new header; then the record
        let october = UTCInstant(secondsSinceEpoch: 1_793_000_000)
        await #expect(throws: StoreError.self) { try await ledger.append(type: "ticket", body: [2], time: october) }
        // November: the empty October segment has the next record's number in its name.
        let november = UTCInstant(secondsSinceEpoch: 1_794_000_000)
        #expect(try await ledger.append(type: "ticket", body: [3], time: november) == 2)
        #expect(try await ledger.append(type: "ticket", body: [4], time: november) == 3)
        await ledger.close()
        fs.powerCut(seed: 3)
        let reopened = try await open(fs)
        #expect(try await reopened.read(after: 0, limit: 10).map(\.body) == [[1], [3], [4]])
        #expect(try await reopened.append(type: "ticket", body: [5]) == 4)
        await reopened.close()
    }
}
