import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Synchronization
import Uplink

/// Every event of the daemon — devices, buses, the store, the tally — goes to the ledger (type "event"), so it
/// survives restarts and outages and the uplink publishes it on `events` from the ledger's cursor with a stable id.
/// Recording never waits for the disk: events queue (up to `bufferLimit`; beyond that the newest are counted and
/// dropped, which only a failing disk can cause) and the service stores them in order.
///
/// An event the ledger cannot take (a full disk: the very outage the hub must hear about) is not given up: it is
/// retried every `retryInterval` while later events wait behind it, in order, until the disk takes it again. Only at
/// shutdown with the disk still failing are the waiting events given up, each logged with its message.
final class EventLog: Sendable {
    private let stream: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let dropped = Mutex<Int>(0)
    private let finishing = Mutex(false)
    let retryInterval: Duration

    init(bufferLimit: Int = 10_000, retryInterval: Duration = .seconds(2)) {
        (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingOldest(bufferLimit))
        self.retryInterval = retryInterval
    }

    func record(_ event: Event) {
        if case .dropped = continuation.yield(event) { dropped.withLock { $0 += 1 } }
    }

    /// Stores events until `finish()`, then what is still queued.
    func drain(into ledger: Ledger, identity: NodeIdentity, logger: Logger) async {
        for await e in stream {
            let line: Logger.Message = "event \(e.kind.rawValue): \(e.message)"
            switch e.severity {
            case .alarm: logger.warning(line)
            case .warning, .info: logger.notice(line)
            }
            await store(e, into: ledger, identity: identity, logger: logger)
            let lost = dropped.withLock { n in defer { n = 0 }; return n }
            if lost > 0 { logger.error("\(lost) event(s) were dropped: the ledger could not keep up") }
        }
    }

    /// Appends `e`, retrying while the ledger refuses it; gives up only when the service is finishing.
    private func store(_ e: Event, into ledger: Ledger, identity: NodeIdentity, logger: Logger) async {
        let body = Payloads.eventBody(e, identity: identity)
        var failures = 0
        while true {
            do {
                try await ledger.append(type: Payloads.eventRecordType, body: body, time: e.time)
                if failures > 0 { logger.notice("event \(e.kind.rawValue) stored in the ledger after \(failures) failed attempt(s)") }
                return
            } catch {
                failures += 1
                if finishing.withLock({ $0 }) {
                    logger.error("event \(e.kind.rawValue) not stored in the ledger, given up at shutdown: \(error); the event was: \(e.message)")
                    return
                }
                if failures == 1 {
                    logger.error("event \(e.kind.rawValue) not stored in the ledger yet, retrying every \(retryInterval) (later events wait behind it): \(error)")
                }
                try? await Task.sleep(for: retryInterval)
            }
        }
    }

    func finish() {
        finishing.withLock { $0 = true }
        continuation.finish()
    }
}

/// Runs the event log until shutdown; then stores what is queued and closes the ledger (it stops after the
/// tally and the uplink, the ledger's other users).
struct EventService: Service {
    let events: EventLog
    let ledger: Ledger
    let identity: NodeIdentity
    let barrier: ReadinessBarrier
    let logger: Logger

    func run() async throws {
        barrier.arrive("events")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await events.drain(into: ledger, identity: identity, logger: logger) }
            try? await gracefulShutdown()
            events.finish()
        }
        await ledger.close()
    }
}

extension Event {
    /// The event a store event stands for (nil for those that are not the hub's business).
    init?(_ e: StoreEvent, time: UTCInstant) {
        switch e {
        case .dropped(let n, let first, let last):
            self.init(kind: .storeDropped, severity: .alarm, time: time,
                      message: "store full: the oldest \(n) readings (\(first)...\(last)) were dropped",
                      attributes: ["readings": "\(n)", "first_seq": "\(first)", "last_seq": "\(last)"])
        case .droppedInMemory(let n):
            self.init(kind: .storeDropped, severity: .alarm, time: time,
                      message: "store: \(n) readings lost from the in-memory queue while the disk could not be written",
                      attributes: ["readings": "\(n)"])
        case .writeFailed(let why):
            self.init(kind: .storeError, severity: .alarm, time: time, message: "store: writing failed, readings wait in memory: \(why)")
        case .writeRecovered:
            self.init(kind: .storeError, severity: .info, time: time, message: "store: writing works again")
        case .recovered(let report):
            guard report.truncatedBytes > 0 || !report.quarantined.isEmpty else { return nil }
            self.init(kind: .storeError, severity: .warning, time: time,
                      message: "store recovered at open: cut \(report.truncatedBytes) torn bytes, quarantined \(report.quarantined.joined(separator: ", "))")
        }
    }
}
