import KilnTallyCore
@testable import KilnTallyDaemon
import Logging
import RingStore
import Synchronization
import Testing
import Uplink

/// Events go to the ledger before anything publishes them; a full disk is itself an event the hub must hear about.
@Suite("Event log: a full disk delays events, never loses them")
struct EventLogTests {
    func event(_ message: String, _ kind: Event.Kind = .storeError) -> Event {
        Event(kind: kind, severity: .alarm, time: UTCInstant(nanosecondsSinceEpoch: 1_790_000_000_000_000_000), message: message)
    }

    func messages(_ ledger: Ledger) async throws -> [String] {
        try await ledger.read(after: 0, limit: 100).map { String(decoding: $0.body, as: UTF8.self) }
    }

    @Test("events the ledger refuses are retried in order until the disk takes them; at shutdown they are given up, not waited for")
    func retriesInOrder() async throws {
        let fs = SimulatedFileSystem()
        var logger = Logger(label: "events")
        logger.logLevel = .critical
        let ledger = try await Ledger(directory: "/state/ledger", fs: fs, logger: logger)
        let events = EventLog(retryInterval: .milliseconds(20))
        let done = Done()
        let drained = Task {
            await events.drain(into: ledger, identity: NodeIdentity(site: "plant-a", node: "kiln1"), logger: logger)
            done.flag.withLock { $0 = true }
        }

        fs.setDiskFull(true)
        events.record(event("store: writing failed, readings wait in memory: disk full"))
        events.record(event("bus plc is back", .busUp))
        try await Task.sleep(for: .milliseconds(200))
        #expect(await ledger.count == 0)

        fs.setDiskFull(false)
        for _ in 0..<200 where await ledger.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        let stored = try await messages(ledger)
        #expect(stored.count == 2)
        #expect(stored.first?.contains("writing failed") == true, "\(stored)")
        #expect(stored.last?.contains("bus plc is back") == true, "\(stored)")

        // Shutdown with the disk full again: the drain ends (bounded), the event is logged, not stored.
        fs.setDiskFull(true)
        events.record(event("store: writing failed again"))
        try await Task.sleep(for: .milliseconds(100))
        events.finish()
        for _ in 0..<200 where !done.flag.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(done.flag.withLock { $0 }, "the drain must end at shutdown although the disk is still full")
        #expect(await ledger.count == 2)
        drained.cancel()
        await ledger.close()
    }
}

final class Done: Sendable {
    let flag = Mutex(false)
}
