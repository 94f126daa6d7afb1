import Foundation
import KilnTallyCore
import Logging
@testable import RingStore
import Synchronization
import TestSupport
import Testing

/// A simulated file system as a process sees it that is killed (SIGKILL) after `budget` more file operations once
/// `arm()` was called (the crash-loop test kills its writer only after a first durable append): the operation that
/// hits the budget does nothing, or — a `pwrite` with `cutSeed` set — only the pages before some page boundary inside
/// it (the kernel copies a write page by page and stops at a fatal signal); every later call fails and changes
/// nothing. What was done stays in the "page cache" (`SimulatedFileSystem`), as after a real SIGKILL.
final class KilledProcessFileIO: FileIO {
    let base: SimulatedFileSystem
    private struct State {
        var budget: Int
        var cutSeed: UInt64
        var armed = false
        var dead = false
    }
    private let state: Mutex<State>

    init(_ base: SimulatedFileSystem, budget: Int, cutSeed: UInt64) {
        self.base = base
        state = Mutex(State(budget: budget, cutSeed: cutSeed))
    }

    var dead: Bool { state.withLock { $0.dead } }
    func arm() { state.withLock { $0.armed = true } }

    /// Counts one operation; nil if it may run, else the cut seed (0: none) of the operation the kill lands in.
    private func step() -> UInt64? {
        state.withLock { s in
            if s.dead { return 0 }
            guard s.armed else { return nil }
            s.budget -= 1
            guard s.budget < 0 else { return nil }
            s.dead = true
            return s.cutSeed
        }
    }

    private func alive(_ call: String, _ path: String) throws(StoreError) {
        if step() != nil { throw StoreError(call: call, path: path, errno: 0, detail: "the process was killed") }
    }

    func write(_ file: FileID, path: String, _ bytes: [UInt8], at offset: Int64) throws(StoreError) {
        guard let cutSeed = step() else { return try base.write(file, path: path, bytes, at: offset) }
        var boundaries: [Int64] = []
        var b = (offset / 4096 + 1) * 4096
        while b < offset + Int64(bytes.count) {
            boundaries.append(b)
            b += 4096
        }
        if cutSeed != 0, !boundaries.isEmpty {
            let cut = boundaries[Int(cutSeed % UInt64(boundaries.count))]
            try? base.write(file, path: path, Array(bytes.prefix(Int(cut - offset))), at: offset)
        }
        throw StoreError(call: "pwrite", path: path, errno: 0, detail: "the process was killed")
    }

    func open(_ path: String, create: Bool) throws(StoreError) -> FileID {
        try alive("open", path)
        return try base.open(path, create: create)
    }
    func close(_ file: FileID) { if !dead { base.close(file) } }
    func size(_ file: FileID, path: String) throws(StoreError) -> Int64 {
        try alive("fstat", path)
        return try base.size(file, path: path)
    }
    func read(_ file: FileID, path: String, count: Int, at offset: Int64) throws(StoreError) -> [UInt8] {
        try alive("pread", path)
        return try base.read(file, path: path, count: count, at: offset)
    }
    func sync(_ file: FileID, path: String) throws(StoreError) {
        try alive("fdatasync", path)
        try base.sync(file, path: path)
    }
    func truncate(_ file: FileID, path: String, to size: Int64) throws(StoreError) {
        try alive("ftruncate", path)
        try base.truncate(file, path: path, to: size)
    }
    func rename(_ from: String, to: String) throws(StoreError) {
        try alive("rename", from)
        try base.rename(from, to: to)
    }
    func remove(_ path: String) throws(StoreError) {
        try alive("unlink", path)
        try base.remove(path)
    }
    func makeDirectories(_ path: String) throws(StoreError) {
        try alive("mkdir", path)
        try base.makeDirectories(path)
    }
    func list(_ directory: String) throws(StoreError) -> [String] {
        try alive("opendir", directory)
        return try base.list(directory)
    }
    func syncDirectory(_ directory: String) throws(StoreError) {
        try alive("fsync", directory)
        try base.syncDirectory(directory)
    }
}

@Suite("Ring store kill points")
struct KillPointTests {
    /// The killed writer's complaints (a commit that cannot write, a rollback that cannot undo it) are expected.
    static let silent = Logger(label: "killed-writer") { _ in SwiftLogNoOpLogHandler() }

    /// The crash-loop test (`RingStoreCrashLoopTests`) without processes or timing: the crash writer's pattern
    /// (batches of 2, 3, … readings, each waited for) killed after a random number of file operations from its first
    /// durable append on — in a frame write (cut at a page), a sync, a segment roll (index, create, header, directory
    /// sync) — then a store opened with the default options reads everything back, as the test does, before the next
    /// writer. KILNTALLY_LONG=1 runs 400 seeds (10,000 kills) instead of 8.
    @Test("a writer killed after any file operation: nothing reported durable is lost, recovery finds no damage and skips no number",
          arguments: 0..<(ProcessInfo.processInfo.environment["KILNTALLY_LONG"] == "1" ? 400 : 8))
    func killedAnywhere(seed: UInt64) async throws {
        var rng = SplitMix64(seed: seed)
        let fs = SimulatedFileSystem()
        let clock = ManualClock(start: UTCInstant(secondsSinceEpoch: 1_790_000_000))
        var options = RingStore.Options(maxBytes: 1 << 30)
        options.segmentBytes = [1024, 2048, 4096][Int(seed % 3)]
        var durable: UInt64 = 0
        for i in 0..<25 {
            let process = KilledProcessFileIO(fs, budget: Int(rng.next() % 300), cutSeed: rng.next() % 3 == 0 ? 0 : rng.next() | 1)
            let writer = try await RingStore(directory: "/state/readings", options: options, fs: process, clock: clock,
                                             bootID: Array(repeating: 7, count: 16), logger: Self.silent)
            var batch: UInt64 = 1
            while !process.dead {
                let next = writer.lastDurableSequence + 1
                guard let range = writer.submit((0..<(batch % 50 + 1)).map { sampleReading(next + $0) }) else { break }
                #expect(range.lowerBound == next)
                guard (try? await writer.waitUntilDurable(range.upperBound)) != nil else { break }
                durable = max(durable, range.upperBound)
                process.arm()
                batch += 1
            }
            await writer.close()  // changes nothing: every file operation of the killed process fails
            fs.crashProcess()
            let store = try await RingStore(directory: "/state/readings", fs: fs, clock: clock,
                                            bootID: Array(repeating: 7, count: 16), logger: quietLogger)
            let report = store.recoveryReport
            let all = try await everything(store)
            let seqs = all.map(\.seq)
            #expect(seqs == (0..<UInt64(seqs.count)).map { $0 + 1 }, "seed \(seed) iteration \(i): contiguous from 1")
            #expect(seqs.count >= Int(durable), "seed \(seed) iteration \(i): \(durable) reported durable, \(seqs.count) present")
            #expect(all.allSatisfy { $0.reading == sampleReading($0.seq) }, "seed \(seed) iteration \(i): intact")
            #expect(report.quarantined.isEmpty && report.skippedSequences == 0, "seed \(seed) iteration \(i): \(report)")
            await store.close()
        }
        #expect(durable > 0)
    }
}

