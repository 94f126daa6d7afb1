import Foundation
import KilnTallyCore
import Logging
import RingStore
import Testing

@Suite("Skeleton reading log")
struct ReadingLogTests {
    let logger: Logger = {
        var l = Logger(label: "test")
        l.logLevel = .critical  // recovery warnings are expected here; the assertions check them
        return l
    }()

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "kt-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func reading(_ i: Int, value: ReadingValue? = nil) -> Reading {
        Reading(device: "belt1", channel: "total1", time: UTCInstant(secondsSinceEpoch: 1_790_000_000 + Int64(i)),
                value: value ?? .uint(UInt64(1000 + i)), unit: .kilogram, quality: .good, clockSynchronized: i % 2 == 0,
                raw: [UInt16(i), 7])
    }

    @Test func appendReadRoundTripsEveryField() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await ReadingLog(directory: dir, logger: logger)
        let values: [ReadingValue] = [.int(-5), .uint(UInt64.max), .double(3.25), .bool(true), .string("AB-123"), .none]
        let input = values.enumerated().map { reading($0.offset, value: $0.element) }
        let range = try await store.append(input)
        #expect(range == 1...6)
        let back = try await store.read(after: 0, limit: 100)
        #expect(back.map(\.seq) == [1, 2, 3, 4, 5, 6])
        #expect(back.map(\.reading) == input)
        #expect(try await store.read(after: 4, limit: 1).map(\.seq) == [5])
        await store.close()
    }

    @Test func sequenceContinuesAcrossReopen() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try await ReadingLog(directory: dir, logger: logger)
            try await store.append((0..<3).map { reading($0) })
            await store.close()
        }
        let store = try await ReadingLog(directory: dir, logger: logger)
        #expect(await store.lastSequence == 3)
        #expect(try await store.append([reading(9)]) == 4...4)
        await store.close()
    }

    @Test("a torn tail (power cut mid-write) is cut off and earlier records survive")
    func tornTail() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try await ReadingLog(directory: dir, logger: logger)
            try await store.append((0..<5).map { reading($0) })
            await store.close()
        }
        let path = dir + "/readings.log"
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        // Cut the last record in half, and separately flip a byte inside it: both must keep records 1-4.
        for damage in ["truncate", "flip"] {
            var data = full
            if damage == "truncate" { data = data.prefix(data.count - 10) } else { data[data.count - 3] ^= 0xFF }
            try data.write(to: URL(fileURLWithPath: path))
            let store = try await ReadingLog(directory: dir, logger: logger)
            #expect(await store.lastSequence == 4, "after \(damage)")
            #expect(try await store.read(after: 0, limit: 10).map(\.seq) == [1, 2, 3, 4])
            // Appends continue cleanly after the cut.
            #expect(try await store.append([reading(42)]) == 5...5)
            await store.close()
            try full.write(to: URL(fileURLWithPath: path))
        }
    }

    @Test func refusesANewerFormatInsteadOfTreatingItAsCorruption() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var header = Array("KTRL".utf8)
        header += [9, 0, 0, 0]
        try Data(header).write(to: URL(fileURLWithPath: dir + "/readings.log"))
        await #expect(throws: StoreError.self) { try await ReadingLog(directory: dir, logger: logger) }
        do {
            _ = try await ReadingLog(directory: dir, logger: logger)
        } catch {
            #expect(error.description.contains("format version 9 is newer"))
        }
    }

    @Test func cursorsAreDurableAndKeepSequencesMonotonic() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try await ReadingLog(directory: dir, logger: logger)
            #expect(try await store.cursor("uplink") == 0)
            try await store.append((0..<7).map { reading($0) })
            try await store.setCursor("uplink", to: 7)
            await store.close()
        }
        // Even if the log itself is lost, a new one does not reuse sequence numbers a reader already saw.
        try FileManager.default.removeItem(atPath: dir + "/readings.log")
        let store = try await ReadingLog(directory: dir, logger: logger)
        #expect(try await store.cursor("uplink") == 7)
        #expect(try await store.append([reading(1)]) == 8...8)
        await store.close()
    }

    @Test func updatesStreamAnnouncesAppends() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await ReadingLog(directory: dir, logger: logger)
        let updates = await store.updates()
        try await store.append([reading(1), reading(2)])
        var it = updates.makeAsyncIterator()
        #expect(await it.next() == 2)
        await store.close()
    }

    @Test("damage in the middle is quarantined, not cut: earlier records kept, the file kept aside, no number reused")
    func midFileDamageIsQuarantined() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try await ReadingLog(directory: dir, logger: logger)
            try await store.append((0..<5).map { reading($0) })
            try await store.setCursor("uplink", to: 3)
            await store.close()
        }
        let path = dir + "/readings.log"
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        // Flip a byte inside the second record's body (header is 8 bytes, each record 8 + body).
        let firstLength = Int(data[8]) | Int(data[9]) << 8
        data[8 + 8 + firstLength + 8 + 3] ^= 0x5A
        try data.write(to: URL(fileURLWithPath: path))

        let store = try await ReadingLog(directory: dir, logger: logger)
        #expect(try await store.read(after: 0, limit: 10).map(\.seq) == [1], "only the record before the damage stays live")
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("readings.log.damaged-") }
        #expect(aside.count == 1, "the damaged file is kept aside, not deleted")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + aside[0])) == data)
        // Records 2...5 may still be in the damaged file under their numbers: new readings never reuse them.
        let next = try await store.append([reading(99)])
        #expect(next!.lowerBound > 5)
        #expect(try await store.read(after: 1, limit: 10).map(\.seq) == [next!.lowerBound])
        await store.close()
    }

    @Test("zeros after the last good record (blocks allocated, never written) are a torn tail")
    func zeroFilledTail() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try await ReadingLog(directory: dir, logger: logger)
            try await store.append((0..<3).map { reading($0) })
            await store.close()
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/readings.log"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(count: 4096))
        try handle.close()
        let store = try await ReadingLog(directory: dir, logger: logger)
        #expect(try await store.read(after: 0, limit: 10).map(\.seq) == [1, 2, 3])
        #expect(try await store.append([reading(3)]) == 4...4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy { !$0.contains("damaged") })
        await store.close()
    }

    @Test("stray files in cursors/ do not stop the store from opening")
    func strayCursorFiles() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/cursors", withIntermediateDirectories: true)
        try "12\n".write(toFile: dir + "/cursors/uplink-readings~", atomically: true, encoding: .utf8)
        try "not a number".write(toFile: dir + "/cursors/broken", atomically: true, encoding: .utf8)
        try "7\n".write(toFile: dir + "/cursors/uplink", atomically: true, encoding: .utf8)
        let store = try await ReadingLog(directory: dir, logger: logger)
        #expect(try await store.append([reading(1)]) == 8...8, "the valid cursor still sets the floor")
        await store.close()
    }

    @Test func oversizedReadingIsRefusedBeforeItIsWritten() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await ReadingLog(directory: dir, logger: logger)
        var big = reading(1)
        big.raw = Array(repeating: 1, count: 5000)
        await #expect(throws: StoreError.self) { try await store.append([big]) }
        #expect(try await store.append([reading(2)]) == 1...1)
        await store.close()
    }
}
