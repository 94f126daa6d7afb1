import Dispatch
import Foundation
import KilnTallyCore
import Logging
import RingStore
import TestSupport
import Uplink

/// The store and encode stages of the per-reading budget, for Benchmarks/callgrind.sh (instructions are counted at
/// two N and divided by the difference, so set-up cancels out).
enum StageBenchmarks {
    /// Runs `body` on the cooperative pool while the main thread waits on a semaphore. valgrind 3.19 crashes when the
    /// main thread parks in libdispatch's main loop (rt_sigsuspend), which is where an async main waits; a blocked
    /// main thread keeps callgrind working. `body` must not need the main actor (the main thread is blocked): pass
    /// it values, not top-level variables of main.swift, which are main-actor isolated.
    static func blocking(_ body: @escaping @Sendable () async throws -> Void) {
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { try await body() } catch { fatalError("\(error)") }
            done.signal()
        }
        done.wait()
    }

    /// N plant-like readings through the reading ring: submitted in polls of 12 and group-committed (one frame and
    /// one fdatasync per 2,000 readings here; the syscalls' own kernel time is not in callgrind's count).
    static func store(readings n: Int) async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-stage-store")
        var logger = Logger(label: "stage")
        logger.logLevel = .critical
        let store = try await RingStore(directory: dir.file("readings"), options: .init(maxBytes: 1 << 30), logger: logger)
        let readings = (1...UInt64(n)).map(sampleReading)
        var i = 0
        while i < n {
            let end = min(n, i + 12)
            _ = store.submit(Array(readings[i..<end]))
            i = end
            if i % 2_000 == 0 { await store.commit() }
        }
        await store.commit()
        await store.close()
    }

    /// N readings read back from a full ring and encoded as `readings` payloads in batches of 200, as the uplink does
    /// before handing a batch to libmosquitto.
    static func encode(readings n: Int) async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-stage-encode")
        var logger = Logger(label: "stage")
        logger.logLevel = .critical
        let store = try await RingStore(directory: dir.file("readings"), options: .init(maxBytes: 1 << 30), logger: logger)
        _ = store.submit((1...UInt64(n)).map(sampleReading))
        await store.commit()
        var after: UInt64 = 0
        var bytes = 0
        let identity = NodeIdentity(site: "plant-a", node: "kiln1")
        while true {
            let batch = try await store.read(after: after, limit: 200).readings
            guard let last = batch.last else { break }
            bytes += Payloads.readings(batch, identity: identity).count
            after = last.seq
        }
        await store.close()
        if bytes == 0 { print("nothing encoded") }
    }
}
