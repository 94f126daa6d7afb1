import Foundation
import KilnTallyCore
import Logging
import MQTTKit
import RingStore
import Synchronization

/// Publishes to the hub: the retained status (birth on every connect, will when the connection dies, `offline`
/// at clean shutdown), the stored readings, and the ledger's records (tickets, shift reports, events) —
/// store-and-forward from durable cursors that advance only when the broker acknowledged (PUBACK). After an outage
/// or a restart each resumes from its cursor.
public final class Uplink: Sendable {
    public static let readingsCursor = "uplink-readings"
    /// The ledger's cursor: the last record all of whose messages the broker acknowledged.
    public static let recordsCursor = "uplink-records"
    /// The ledger sequence number of the report last published on `shifts/last` (so a revision of an older shift,
    /// after a restart too, does not replace a newer shift there).
    public static let shiftsLastCursor = "uplink-shifts-last"

    private let config: UplinkConfig
    private let store: RingStore
    private let ledger: Ledger?
    private let info: Payloads.StatusInfo
    private let clock: any WallClock
    private let logger: Logger
    public let topics: TopicTree
    /// Whether the broker connection is up, and when the broker last acknowledged a readings batch.
    private let link = Mutex<(connected: Bool, lastAck: UTCInstant?, readingsAcked: UInt64)>((false, nil, 0))
    public var isConnected: Bool { link.withLock { $0.connected } }
    /// Why the uplink is not connected (the last failed attempt, refusal or loss); nil while connected.
    public var lastConnectionError: String? { outage.withLock { $0.lastError } }
    /// The outage in progress, for the log, the status and the `uplink_down`/`uplink_up` events.
    private let outage = Mutex(Outage())
    private struct Outage {
        var lastError: String?
        /// When the link went down (or the first attempt failed); nil while up or before the first attempt.
        var since: UTCInstant?
        var failedAttempts = 0
        var lastWarning: (text: String, at: ContinuousClock.Instant)?
    }
    /// Where `uplink_down`/`uplink_up` events go (the daemon's event log: the ledger, published once back up).
    private let recordEvent: (@Sendable (Event) -> Void)?
    public var lastAcknowledgement: UTCInstant? { link.withLock { $0.lastAck } }
    /// The last reading sequence number the broker acknowledged in this run (0 before the first).
    public var readingsAcknowledged: UInt64 { link.withLock { $0.readingsAcked } }

    /// Re-publication jobs asked for by the hub through a technician (`kilntally uplink resend`).
    private let resends: (stream: AsyncStream<ResendJob>, continuation: AsyncStream<ResendJob>.Continuation) = AsyncStream.makeStream()

    enum ResendJob: Sendable {
        case readings(from: UInt64, through: UInt64)
        case records([LedgerRecord])
    }

    /// The latest running totals of the open shift for the retained `shifts/current`, and how many were given.
    private let current = Mutex<(payload: [UInt8]?, version: UInt64)>((nil, 0))
    private let currentSignal: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation) =
        AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))

    public init(config: UplinkConfig, store: RingStore, ledger: Ledger? = nil, info: Payloads.StatusInfo, clock: any WallClock,
                logger: Logger, events: (@Sendable (Event) -> Void)? = nil) {
        self.recordEvent = events
        self.config = config
        self.store = store
        self.ledger = ledger
        self.info = info
        self.clock = clock
        var logger = logger
        logger[metadataKey: "broker"] = "\(config.mqtt.host):\(config.mqtt.port)"
        self.logger = logger
        topics = TopicTree(prefix: config.topicPrefix, identity: config.identity)
    }

    /// Runs until the task is cancelled, then publishes `offline` and disconnects cleanly.
    public func run() async {
        guard let client = await makeClient() else { return }
        do {
            try client.start()
        } catch {
            logger.error("MQTT: \(error)")
        }
        // Birth messages are published from the group too, so none can still be on its way when "offline" goes
        // out below (a late "online" would otherwise become the retained status of a stopped node).
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.publishReadings(client) }
            if let ledger = self.ledger { group.addTask { await self.publishRecords(client, ledger) } }
            group.addTask { await self.publishCurrent(client) }
            group.addTask { await self.runResends(client) }
            for await event in client.events {
                if Task.isCancelled { break }
                if case .connected = event {
                    group.addTask { await self.publishBirth(client) }
                }
                self.log(event)
            }
            group.cancelAll()
            await group.waitForAll()
        }
        let offline = MQTTMessage(topic: topics.status, payload: statusPayload(online: false, reason: "shutdown"),
                                  qos: .atLeastOnce, retain: true)
        // run() ends because its task was cancelled (graceful shutdown); the goodbye must not inherit that
        // cancellation, or waiting for the broker's PUBACK of "offline" would end at once.
        await Task { await client.shutdown(publishing: offline, timeout: .seconds(2)) }.value
        logger.info("uplink stopped")
    }

    /// Creates the client, retrying while its configuration cannot be applied (e.g. a TLS file not there yet):
    /// the daemon keeps polling and storing meanwhile.
    private func makeClient() async -> MQTTClient? {
        var mqtt = config.mqtt
        mqtt.will = MQTTMessage(topic: topics.status, payload: statusPayload(online: false, reason: "connection lost"),
                                qos: .atLeastOnce, retain: true)
        while !Task.isCancelled {
            do {
                return try MQTTClient(configuration: mqtt, logger: logger)
            } catch {
                logger.error("MQTT client cannot be set up, retrying in 10 s: \(error)")
                try? await Task.sleep(for: .seconds(10))
            }
        }
        return nil
    }

    private func statusPayload(online: Bool, reason: String? = nil) -> [UInt8] {
        Payloads.status(online: online, identity: config.identity, info: info,
                        time: online ? clock.now() : nil, clockSynchronized: online ? clock.isSynchronized() : nil,
                        reason: reason)
    }

    private func publishBirth(_ client: MQTTClient) async {
        let birth = MQTTMessage(topic: topics.status, payload: statusPayload(online: true), qos: .atLeastOnce, retain: true)
        do { try await client.publish(birth) } catch { logger.debug("birth not published: \(error)") }
    }

    private func log(_ event: MQTTConnectionEvent) {
        link.withLock {
            if case .connected = event { $0.connected = true } else { $0.connected = false }
        }
        let now = clock.now()
        switch event {
        case .connected:
            let ended = outage.withLock { o -> Outage in defer { o = Outage() }; return o }
            guard let since = ended.since else {
                logger.info("connected to MQTT broker")
                return
            }
            let down = Double(now.nanosecondsSinceEpoch - since.nanosecondsSinceEpoch) / 1e9
            let text = "connected to MQTT broker again after \(Self.roundedSeconds(down)) s down (since \(since.rfc3339), "
                + "\(ended.failedAttempts) failed attempt(s)\(ended.lastError.map { ", last: \($0)" } ?? ""))"
            logger.notice("\(text)")
            recordEvent?(Event(kind: .uplinkUp, severity: .info, time: now, message: text,
                               attributes: ["down_since": since.rfc3339, "failed_attempts": "\(ended.failedAttempts)"]))
        case .connectionRefused(let error):
            if error.call == "TLS handshake" {
                // Most often the plant refusing the broker's certificate, not the broker refusing the plant.
                logger.error("TLS handshake with the MQTT broker failed (check [mqtt.tls] ca_file, the host name and the clock): \(error)")
            } else {
                logger.error("MQTT broker refused the connection: \(error)")
            }
            outage.withLock { $0.failedAttempts += 1 }
            wentDown(error: "\(error)", now: now)
        case .disconnected(let error):
            guard let error else {
                logger.info("MQTT disconnected")
                return
            }
            logger.warning("MQTT connection lost: \(error)")
            wentDown(error: "\(error)", now: now)
        case .attemptFailed(let error):
            let text = "\(error)"
            let reason = "\(error.code) \(error.message)"  // not the call: connect_async first, reconnect_async after
            let (attempts, warn) = outage.withLock { o -> (Int, Bool) in
                o.failedAttempts += 1
                // The first failure, a new reason, and then every 10 minutes: the journal shows why without
                // repeating it at every backoff step.
                let warn = o.lastWarning.map { $0.text != reason || ContinuousClock.now - $0.at >= .seconds(600) } ?? true
                if warn { o.lastWarning = (reason, .now) }
                return (o.failedAttempts, warn)
            }
            if warn {
                logger.warning("cannot reach the MQTT broker (attempt \(attempts), retrying with backoff; readings wait in the store): \(text)")
            } else {
                logger.debug("MQTT connection attempt \(attempts) failed: \(text)")
            }
            wentDown(error: text, now: now)
        }
    }

    /// Notes why the link is down; the first time in an outage, records `uplink_down`.
    private func wentDown(error: String, now: UTCInstant) {
        let first = outage.withLock { o -> Bool in
            o.lastError = error
            guard o.since == nil else { return false }
            o.since = now
            return true
        }
        guard first else { return }
        recordEvent?(Event(kind: .uplinkDown, severity: .warning, time: now,
                           message: "MQTT broker \(config.mqtt.host):\(config.mqtt.port) not reachable: \(error); readings wait in the store",
                           attributes: ["broker": "\(config.mqtt.host):\(config.mqtt.port)"]))
    }

    private static func roundedSeconds(_ s: Double) -> String { String(Int(s.rounded())) }

    /// Store-and-forward: publish everything after the durable cursor, oldest first, in batches; the cursor
    /// advances to a batch's last sequence number once the broker acknowledged it. A backlog (after an outage or a
    /// restart: more than `backlogThreshold` readings behind) is replayed at most at `replayRate` while a live lane
    /// publishes the readings that arrive meanwhile, so they reach the hub promptly; the cursor passes the live
    /// lane's range only when the backlog before it is done (after a restart mid-replay that range is sent again:
    /// at least once, same sequence numbers).
    private func publishReadings(_ client: MQTTClient) async {
        var acked: UInt64
        do {
            acked = try await store.cursor(Self.readingsCursor)
        } catch {
            logger.error("cannot read the uplink cursor, starting from the oldest stored reading: \(error)")
            acked = 0
        }
        let updates = await store.updates()
        for await last in updates {
            if Task.isCancelled { return }
            guard last > acked else { continue }
            if last - acked > backlogThreshold {
                guard let done = await replay(client, after: acked, through: last) else { return }
                acked = done
                continue
            }
            // Let a batch gather, unless a full one is already waiting.
            if last - acked < UInt64(config.batchSize) {
                do { try await Task.sleep(for: config.batchInterval) } catch { return }
            }
            guard let caughtUp = await publishBatches(client, after: acked, through: nil, lane: "live") else { return }
            acked = caughtUp
        }
    }

    /// Readings behind the newest beyond which they are a backlog, replayed at the capped rate.
    var backlogThreshold: UInt64 { UInt64(max(config.batchSize * 4, 1_000)) }

    /// Publishes batches after `seq` (up to `end` when given, else until caught up), saving the cursor after each
    /// acknowledged batch when `saveCursor`; paced at `rate` readings per second when given. Returns the last
    /// sequence number acknowledged, or nil when the uplink is shutting down.
    private func publishBatches(_ client: MQTTClient, after seq: UInt64, through end: UInt64?, lane: String,
                                rate: Int? = nil, saveCursor: Bool = true) async -> UInt64? {
        var acked = seq
        let started = ContinuousClock.now
        var lastSave = started
        var sent = 0
        var saved = seq
        // Whatever way this returns, the last acknowledged position is saved first.
        func finish(_ result: UInt64?) async -> UInt64? {
            if saveCursor && acked > saved { await saveReadingsCursor(acked) }
            return result
        }
        while !Task.isCancelled {
            let limit = end.map { Int(min(UInt64(config.batchSize), $0 - acked)) } ?? config.batchSize
            guard limit > 0 else { return await finish(acked) }
            let result: RingStore.ReadResult
            do {
                result = try await store.read(after: acked, limit: limit, filter: nil)
            } catch {
                logger.error("uplink cannot read the store: \(error)")
                return await finish(acked)
            }
            if let gap = result.gap {
                // Dropped by the store's byte bound (a long outage) or lost to damage: the hub sees the sequence
                // numbers jump, and the store's own event says how many.
                logger.warning("readings \(gap.lowerBound)...\(gap.upperBound) are no longer in the store and will not be published")
            }
            var batch = result.readings
            if let end { batch.removeAll { $0.seq > end } }
            guard let lastSeq = batch.last?.seq else { return await finish(end.map { max(acked, min($0, result.gap?.upperBound ?? acked)) } ?? acked) }
            let message = MQTTMessage(topic: topics.readings, payload: Payloads.readings(batch, identity: config.identity),
                                      qos: config.readingsQoS, retain: false)
            guard await deliver(message, client, what: "readings \(batch.first!.seq)...\(lastSeq)") else { return await finish(nil) }
            acked = lastSeq
            link.withLock { l in
                l.lastAck = clock.now()
                if lane != "resend" { l.readingsAcked = max(l.readingsAcked, lastSeq) }
            }
            // The cursor file is replaced atomically (two fsyncs): at most every `cursorInterval`, and when caught
            // up. A crash in between re-sends at most that much (at least once, same sequence numbers), never loses.
            if saveCursor, ContinuousClock.now - lastSave >= Self.cursorInterval {
                await saveReadingsCursor(acked)
                (saved, lastSave) = (acked, .now)
            }
            logger.trace("published readings", metadata: ["lane": "\(lane)", "first_seq": "\(batch.first!.seq)", "last_seq": "\(lastSeq)"])
            sent += batch.count
            if let rate, rate > 0 {
                let due = started + .nanoseconds(Int64(Double(sent) / Double(rate) * 1e9))
                if due > .now {
                    do { try await Task.sleep(until: due) } catch { return await finish(nil) }
                }
            }
        }
        return await finish(nil)
    }

    /// How often the readings cursor is saved while batches are acknowledged.
    static let cursorInterval: Duration = .seconds(1)

    private func saveReadingsCursor(_ seq: UInt64) async {
        do {
            try await store.setCursor(Self.readingsCursor, to: seq)
        } catch {
            logger.error("uplink cursor not saved (readings may be sent again after a restart): \(error)")
        }
    }

    /// Replays (seq, end] at the capped rate while a live lane publishes what arrives after `end`. Returns the new
    /// cursor (end, or the live lane's last acknowledged number), or nil when shutting down.
    private func replay(_ client: MQTTClient, after seq: UInt64, through end: UInt64) async -> UInt64? {
        logger.notice("uplink: replaying a backlog of \(end - seq) readings (\(seq + 1)...\(end)) at most \(config.replayRate)/s while new readings go out live")
        let started = ContinuousClock.now
        return await withTaskGroup(of: UInt64?.self) { group in
            group.addTask { await self.liveLane(client, after: end) }
            let backlog = await publishBatches(client, after: seq, through: end, lane: "replay",
                                               rate: config.replayRate > 0 ? config.replayRate : nil)
            group.cancelAll()
            let live = await group.next() ?? nil
            guard let backlog else { return nil }
            let acked = max(backlog, live ?? end)
            if backlog >= end {
                logger.notice("uplink: backlog replayed in \(ContinuousClock.now - started)")
                await saveReadingsCursor(acked)
                return acked
            }
            return backlog
        }
    }

    /// Publishes readings after `end` as they arrive, until cancelled; returns the last one acknowledged (its
    /// acknowledgements are contiguous from `end`). Does not save the cursor: the backlog before it is not done.
    private func liveLane(_ client: MQTTClient, after end: UInt64) async -> UInt64? {
        var acked = end
        let updates = await store.updates()
        for await last in updates {
            if Task.isCancelled { break }
            guard last > acked else { continue }
            if last - acked < UInt64(config.batchSize) {
                do { try await Task.sleep(for: config.batchInterval) } catch { break }
            }
            // Cancellation (the backlog is done) ends a publish in progress; its readings go out again with the next.
            guard let done = await publishBatches(client, after: acked, through: nil, lane: "live", saveCursor: false) else { break }
            acked = done
        }
        return acked
    }

    /// Publishes `message` until the broker takes it. False when the uplink is shutting down (nothing more should be
    /// sent). A refusal (e.g. an MQTT 5 broker refusing the topic) is retried with a growing pause: the cursor does not
    /// move past it, so nothing is skipped once the cause is fixed.
    private func deliver(_ message: MQTTMessage, _ client: MQTTClient, what: String) async -> Bool {
        var retry = Duration.seconds(1)
        while true {
            do {
                try await client.publish(message)
                return true
            } catch where error.isShutdown || error.isCancellation {
                logger.debug("\(what): publish ended: \(error)")
                return false
            } catch {
                logger.error("\(what) not accepted by the broker, retrying in \(retry): \(error)")
                do { try await Task.sleep(for: retry) } catch { return false }
                retry = min(retry * 2, .seconds(60))
            }
        }
    }

    // MARK: resend on request

    /// Publishes again the readings from `seq` through the last one the broker acknowledged (at most at
    /// `replayRate`, beside the normal publishing, which it does not disturb; the cursor does not move). Returns the
    /// range queued. Readings no longer in the store cannot be sent: the range starts at the oldest one kept.
    public func resend(readingsFrom seq: UInt64) async throws(UplinkError) -> ClosedRange<UInt64> {
        let acked: UInt64
        let first: UInt64?
        do {
            acked = try await store.cursor(Self.readingsCursor)
            first = await store.firstSequence
        } catch {
            throw UplinkError("the store cannot be read: \(error)")
        }
        let from = max(seq, first ?? seq, 1)
        guard from <= acked else {
            throw UplinkError("nothing the broker acknowledged from reading \(seq) on (the uplink has acknowledged up to \(acked)\(first.map { ", the store keeps \($0) on" } ?? ""))")
        }
        resends.continuation.yield(.readings(from: from, through: acked))
        return from...acked
    }

    /// Publishes again every revision of the shift report `shift` (`YYYY-MM-DD/NAME`) and every ticket revision of
    /// that shift still in the ledger, on their usual topics (not `shifts/last`). Returns how many records.
    public func resend(shift: String) async throws(UplinkError) -> Int {
        guard let ledger else { throw UplinkError("this node has no ledger") }
        var found: [LedgerRecord] = []
        var seq: UInt64 = 0
        do {
            while true {
                let records = try await ledger.read(after: seq, limit: 1_000)
                guard let last = records.last else { break }
                seq = last.sequence
                for r in records where (r.type == "report" || r.type == "ticket") && RecordFields(r.body).string("shift") == shift {
                    found.append(r)
                }
            }
        } catch {
            throw UplinkError("the ledger cannot be read: \(error)")
        }
        guard !found.isEmpty else { throw UplinkError("no report or ticket of shift \(shift) is in the ledger") }
        resends.continuation.yield(.records(found))
        return found.count
    }

    private func runResends(_ client: MQTTClient) async {
        for await job in resends.stream {
            switch job {
            case .readings(let from, let through):
                logger.notice("uplink: re-publishing readings \(from)...\(through) on request")
                guard await publishBatches(client, after: from - 1, through: through, lane: "resend",
                                           rate: config.replayRate > 0 ? config.replayRate : nil, saveCursor: false) != nil else { return }
            case .records(let records):
                logger.notice("uplink: re-publishing \(records.count) ledger record(s) on request")
                var noLast: String? = "~"  // above every start time: a resend never replaces shifts/last
                for r in records {
                    for message in messages(for: r, lastShiftStart: &noLast) {
                        guard await deliver(message, client, what: "ledger record \(r.sequence) (resend)") else { return }
                    }
                }
            }
        }
    }

    // MARK: shifts/current

    /// Replaces the running totals of the open shift (`kilntally.shift-current/1`); the latest is published,
    /// retained, as soon as the broker can take it (older ones not yet sent are skipped).
    public func updateCurrent(_ payload: [UInt8]) {
        current.withLock { $0 = (payload, $0.version + 1) }
        currentSignal.continuation.yield()
    }

    private func publishCurrent(_ client: MQTTClient) async {
        var sent: UInt64 = 0
        for await _ in currentSignal.stream {
            let (payload, version) = current.withLock { $0 }
            guard let payload, version != sent else { continue }
            let message = MQTTMessage(topic: topics.shiftsCurrent, payload: payload, qos: .atLeastOnce, retain: true)
            guard await deliver(message, client, what: "shifts/current") else { return }
            sent = version
            // A newer one may have come while this one was on its way.
            if current.withLock({ $0.version }) != sent { currentSignal.continuation.yield() }
        }
    }

    // MARK: ledger records

    /// Store-and-forward of the ledger: each ticket on `tickets`, each report on `shifts/{date}/{shift}` (and on the
    /// retained `shifts/last` when it is of the latest shift published there), each event on `events` — in ledger
    /// order, the cursor advancing past a record once the broker acknowledged all its messages.
    private func publishRecords(_ client: MQTTClient, _ ledger: Ledger) async {
        var acked: UInt64
        var lastShiftStart: String?
        do {
            acked = try await ledger.cursor(Self.recordsCursor)
            let lastSeq = try await ledger.cursor(Self.shiftsLastCursor)
            if lastSeq > 0, let r = try await ledger.read(after: lastSeq - 1, limit: 1).first, r.sequence == lastSeq {
                lastShiftStart = RecordFields(r.body).string("start_utc")
            }
        } catch {
            logger.error("cannot read the uplink's ledger cursors, starting from the oldest record: \(error)")
            acked = 0
        }
        let updates = await ledger.updates()
        var pending = true  // records may be waiting from before this run
        var iterator = updates.makeAsyncIterator()
        while !Task.isCancelled {
            if !pending {
                guard await iterator.next() != nil else { return }
            }
            pending = false
            while !Task.isCancelled {
                let records: [LedgerRecord]
                do {
                    records = try await ledger.read(after: acked, limit: 100)
                } catch {
                    logger.error("uplink cannot read the ledger: \(error)")
                    break
                }
                guard !records.isEmpty else { break }
                for r in records {
                    for message in messages(for: r, lastShiftStart: &lastShiftStart) {
                        guard await deliver(message, client, what: "ledger record \(r.sequence) (\(r.type))") else { return }
                        if message.topic == topics.shiftsLast {
                            do { try await ledger.setCursor(Self.shiftsLastCursor, to: r.sequence) } catch {
                                logger.error("uplink shifts/last cursor not saved: \(error)")
                            }
                        }
                    }
                    acked = r.sequence
                    do {
                        try await ledger.setCursor(Self.recordsCursor, to: acked)
                    } catch {
                        logger.error("uplink ledger cursor not saved (records may be sent again after a restart): \(error)")
                    }
                }
            }
        }
    }

    /// The messages a ledger record makes (none for a type the hub does not get).
    private func messages(for r: LedgerRecord, lastShiftStart: inout String?) -> [MQTTMessage] {
        switch r.type {
        case "ticket":
            return [MQTTMessage(topic: topics.tickets, payload: r.body, qos: .atLeastOnce, retain: false)]
        case "report":
            let fields = RecordFields(r.body)
            guard let shift = fields.string("shift"), let slash = shift.firstIndex(of: "/") else {
                logger.error("ledger record \(r.sequence) is a report without a shift id; not published")
                return []
            }
            var out = [MQTTMessage(topic: topics.shift(date: String(shift[..<slash]), name: String(shift[shift.index(after: slash)...])),
                                   payload: r.body, qos: .atLeastOnce, retain: false)]
            // start_utc is always written as YYYY-MM-DDTHH:MM:SS.mmmZ: its text order is its time order.
            if let start = fields.string("start_utc"), lastShiftStart.map({ start >= $0 }) ?? true {
                out.append(MQTTMessage(topic: topics.shiftsLast, payload: r.body, qos: .atLeastOnce, retain: true))
                lastShiftStart = start
            }
            return out
        case Payloads.eventRecordType:
            return [MQTTMessage(topic: topics.events, payload: Payloads.event(stored: r.body, seq: r.sequence, identity: config.identity),
                                qos: .atLeastOnce, retain: false)]
        default:
            return []
        }
    }
}

/// Top-level string fields of a ledger record's JSON (records are written by kilntally: canonical JSON objects).
struct RecordFields {
    private let object: [String: Any]
    init(_ body: [UInt8]) {
        object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }
    func string(_ key: String) -> String? { object[key] as? String }
}

/// Why the uplink cannot do what was asked.
public struct UplinkError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
