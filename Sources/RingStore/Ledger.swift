import KilnTallyCore
import Logging

/// One record of the ledger: what the plant's records are made of (tickets, shift reports and their revisions,
/// events, corrections). The body is opaque here; the tally defines it.
public struct LedgerRecord: Sendable, Hashable {
    public var sequence: UInt64
    public var time: UTCInstant
    /// What the body is, e.g. `ticket`, `shift-report`, `event` ([A-Za-z0-9_-], at most 64 bytes).
    public var type: String
    public var body: [UInt8]
    public init(sequence: UInt64, time: UTCInstant, type: String, body: [UInt8]) {
        self.sequence = sequence
        self.time = time
        self.type = type
        self.body = body
    }
}

/// Ledger records as segment frames, one record per frame.
/// Body: version u8 (1) · sequence u64 · time i64 (ns) · type (varint length + UTF-8) · body (the rest).
enum LedgerFrames: FrameFormat {
    static let segmentKind: UInt8 = 2
    static let fileExtension = "ktl"
    static let version: UInt8 = 1
    static func emptyState() {}
    static func summarize(_ body: ArraySlice<UInt8>, state: inout Void) throws -> FrameSummary {
        let r = try decode(body)
        return FrameSummary(firstSequence: r.sequence, count: 1, minTime: r.time, maxTime: r.time)
    }
    static let minimumBytesPerSequence = 8 + 1 + 8 + 8 + 1
    static func encodeState(_ state: Void, into out: inout [UInt8]) {}
    static func decodeState(_ reader: inout ByteReader) -> Void? { () }

    struct Malformed: Error, CustomStringConvertible { var description: String }

    static func encode(_ r: LedgerRecord) -> [UInt8] {
        var b: [UInt8] = [version]
        b.reserveCapacity(32 + r.type.utf8.count + r.body.count)
        b.appendLE(r.sequence)
        b.appendLE(UInt64(bitPattern: r.time.nanosecondsSinceEpoch))
        b.appendString(r.type)
        b.append(contentsOf: r.body)
        return b
    }

    static func decode(_ body: ArraySlice<UInt8>) throws -> LedgerRecord {
        var r = ByteReader(body)
        guard let v = r.u8() else { throw Malformed(description: "empty record") }
        guard v == version else { throw Malformed(description: "ledger record version \(v) is not one this binary reads (\(version))") }
        guard let seq = r.u64(), let t = r.u64(), let type = r.string() else { throw Malformed(description: "truncated record") }
        return LedgerRecord(sequence: seq, time: UTCInstant(nanosecondsSinceEpoch: Int64(bitPattern: t)), type: type, body: Array(r.bytes))
    }
}

/// The append-only ledger: every record is fsynced before `append` returns, checksummed, numbered, and kept for
/// the retention period (default five years, as permit ledgers require) — and never dropped before every cursor
/// (the uplink's) has passed it. Segments roll by size or at the start of a calendar month (UTC), so retention
/// removes whole months. Recovery, quarantine and errors work as in the reading ring (`SegmentedLog`).
public actor Ledger {
    public struct Options: Sendable {
        public var retention: Duration = .seconds(5 * 366 * 86_400)
        public var segmentBytes: Int64 = 4 << 20
        public init() {}
    }

    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let directory: String
    public nonisolated let options: Options
    public nonisolated let recoveryReport: RecoveryReport
    private let log: SegmentedLog<LedgerFrames>
    private let fs: any FileIO
    private let clock: any WallClock
    private let logger: Logger
    private let broadcaster = SequenceBroadcaster()

    public init(directory: String, options: Options = .init(), fs: any FileIO = PosixFileIO(), clock: any WallClock = SystemClock(),
                bootID: [UInt8] = BootID.current, logger: Logger) async throws(StoreError) {
        self.directory = directory
        self.options = options
        self.fs = fs
        self.clock = clock
        self.logger = logger
        executor = ThreadExecutor(name: "kt-ledger")
        do {
            log = try SegmentedLog.openStore(fs: fs, storeDirectory: directory, bootID: bootID, clock: clock, logger: logger)
        } catch {
            executor.shutdown()
            throw error
        }
        recoveryReport = log.report
        logger.info("ledger opened", metadata: [
            "dir": "\(directory)", "records": "\(log.report.records)", "next_seq": "\(log.nextSequence)",
        ])
    }

    /// Appends a record and returns its sequence number once it is durable (written and fsynced).
    @discardableResult
    public func append(type: String, body: [UInt8], time: UTCInstant? = nil) throws(StoreError) -> UInt64 {
        precondition(isPlainName(type) && type.utf8.count <= 64, "ledger record types are [A-Za-z0-9_-], at most 64 bytes")
        let now = time ?? clock.now()
        let record = LedgerRecord(sequence: log.nextSequence, time: now, type: type, body: body)
        let frame = LedgerFrames.encode(record)
        guard frame.count <= SegmentedLog<LedgerFrames>.maximumFrameBody else {
            throw StoreError(call: "append", path: directory, errno: 22, detail: "ledger record of \(frame.count) bytes is too large")
        }
        if needsNewSegment(at: now) {
            try log.startSegment(first: record.sequence, clockSynchronized: clock.isSynchronized(), now: now)
        }
        let segment = log.segments.last!
        let (frames, size) = (segment.frames.count, segment.size)
        do throws(StoreError) {
            try log.write(frames: [(frame, FrameSummary(firstSequence: record.sequence, count: 1, minTime: now, maxTime: now))], stateAfter: ())
            try log.sync()
        } catch {
            try? log.rollBack(toFrameCount: frames, size: size, state: ())
            throw error
        }
        broadcaster.yield(record.sequence)
        return record.sequence
    }

    private func needsNewSegment(at time: UTCInstant) -> Bool {
        guard let last = log.segments.last else { return true }
        if last.size >= options.segmentBytes { return true }
        return Self.month(of: time) != Self.month(of: last.header.createdAt)
    }

    /// Year × 12 + month (UTC), for rolling segments at month boundaries.
    static func month(of t: UTCInstant) -> Int64 {
        let secs = t.nanosecondsSinceEpoch / 1_000_000_000
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let (y, m, _) = RFC3339.civilFromDays(days)
        return y * 12 + Int64(m)
    }

    /// Up to `limit` records with sequence numbers above `seq`, oldest first.
    public func read(after seq: UInt64, limit: Int) throws(StoreError) -> [LedgerRecord] {
        var out: [LedgerRecord] = []
        guard limit > 0, let start = log.firstFrame(after: seq) else { return out }
        for s in start.segment..<log.segments.count {
            let segment = log.segments[s]
            for f in (s == start.segment ? start.frame : 0)..<segment.frames.count {
                let frame = segment.frames[f]
                let body = try log.readFrame(segment: s, frame: f)
                do {
                    out.append(try LedgerFrames.decode(body[...]))
                } catch {
                    throw StoreError(call: "read", path: segment.path, errno: 0, detail: "record at \(frame.offset): \(error)")
                }
                if out.count >= limit { return out }
            }
        }
        return out
    }

    public var lastSequence: UInt64 { log.nextSequence - 1 }
    public var count: Int { log.segments.reduce(0) { $0 + $1.count } }

    /// Removes whole segments older than the retention period whose records every cursor has passed.
    /// With no cursor at all nothing is removed: nobody has confirmed anything was delivered.
    @discardableResult
    public func applyRetention(now: UTCInstant? = nil) throws(StoreError) -> Int {
        let cutoff = (now ?? clock.now()).adding(.zero - options.retention)
        guard let delivered = cursors.lowest() else { return 0 }
        var removed = 0
        while log.segments.count > 1, let first = log.segments.first, let last = first.lastSequence,
              let newest = first.maxTime, newest < cutoff, last <= delivered {
            try log.dropOldest(whileLargerThan: log.totalBytes - first.size)
                .forEach { removed += $0.count }
        }
        if removed > 0 { logger.notice("ledger: retention removed \(removed) records older than the retention period") }
        return removed
    }

    public func updates() -> AsyncStream<UInt64> {
        broadcaster.subscribe(current: lastSequence)
    }

    private var cursors: Cursors { Cursors(fs: fs, directory: directory + "/cursors") }
    public func cursor(_ name: String) throws(StoreError) -> UInt64 { try cursors.read(name) ?? 0 }
    public func setCursor(_ name: String, to seq: UInt64) throws(StoreError) { try cursors.write(name, seq) }

    public func close() {
        log.close()
        broadcaster.finish()
        executor.shutdown()
    }
}
