import KilnTallyCore
import Logging
import Synchronization

/// Reading batches as segment frames (see `BatchCodec`); the segment state is the series dictionary.
enum ReadingFrames: FrameFormat {
    static let segmentKind: UInt8 = 1
    static let fileExtension = "krs"
    static func emptyState() -> SeriesDictionary { SeriesDictionary() }
    static func summarize(_ body: ArraySlice<UInt8>, state: inout SeriesDictionary) throws -> FrameSummary {
        try BatchCodec.summarize(body, dictionary: &state)
    }
    // Frame header (8) + the smallest batch holds one reading in a handful of bytes: a conservative floor.
    static let minimumBytesPerSequence = 3

    static func encodeState(_ state: SeriesDictionary, into out: inout [UInt8]) {
        out.appendVarint(UInt64(state.count))
        for key in state.keys {
            out.appendString(key.device.rawValue)
            out.appendString(key.channel.rawValue)
            out.appendString(key.unit?.rawValue ?? "")
        }
    }

    static func decodeState(_ r: inout ByteReader) -> SeriesDictionary? {
        guard let n = r.varint(), n <= UInt64(r.bytes.count) else { return nil }
        var d = SeriesDictionary()
        for _ in 0..<n {
            guard let device = r.string(), let channel = r.string(), let unit = r.string() else { return nil }
            if !unit.isEmpty && Unit(rawValue: unit) == nil { return nil }
            _ = d.append(SeriesKey(device: DeviceID(device), channel: ChannelID(channel), unit: unit.isEmpty ? nil : Unit(rawValue: unit)))
        }
        return d
    }
}

/// Something the store wants the operator (and the hub) to know.
public enum StoreEvent: Sendable, Hashable {
    /// The byte bound was reached: the oldest readings were dropped (whole segments).
    case dropped(readings: Int, firstSequence: UInt64, lastSequence: UInt64)
    /// The in-memory queue overflowed while the disk could not be written: the oldest unstored readings were lost.
    case droppedInMemory(readings: Int)
    /// Writing failed (disk full, EIO, read-only): readings wait in memory and are retried.
    case writeFailed(String)
    /// Writing works again after a failure.
    case writeRecovered
    /// Recovery at open did something (cut a torn tail, quarantined a segment).
    case recovered(RecoveryReport)
}

/// The reading ring: a bounded, crash-safe store of every reading (issue 4).
///
/// - **Group commit**: `submit` hands readings over without waiting (sequence numbers are assigned at once, in
///   order); the store writes them as one frame per commit and makes them durable with one fdatasync per sync
///   interval (default 1 s) or as soon as `syncBytes` are pending. `append` waits until its readings are durable.
///   A crash or power cut loses at most what was submitted since the last completed sync.
/// - **Bounded**: when the segments exceed `maxBytes`, whole oldest segments are dropped, counted, and reported.
/// - **Readers** see durable readings only, so a number a reader has seen is never handed out again after a crash.
/// - **Errors**: a failed write or sync leaves the readings queued in memory (bounded by `maxPendingReadings`,
///   oldest lost first, counted) and is retried every sync interval; the daemon keeps polling meanwhile.
public actor RingStore {
    public struct Options: Sendable {
        public var maxBytes: Int64 = 512 << 20
        /// Segments roll at this size; dropping happens in whole segments.
        public var segmentBytes: Int64 = 16 << 20
        public var syncInterval: Duration = .seconds(1)
        /// Commit early once this many encoded bytes are pending.
        public var syncBytes: Int = 1 << 20
        public var maxPendingReadings: Int = 200_000
        /// Readings per frame, at most (a frame is the unit of checksum and of loss at a torn tail, and what a
        /// reader decodes and keeps at once: 2,048 keeps that memory small; larger frames save nothing measurable).
        public var maxReadingsPerFrame: Int = 2048
        /// Frame bytes between restatements of the series dictionary: what damage inside the active segment can
        /// cost at most besides the damaged frame itself (about 3 % overhead at the default).
        public var dictionaryRestatementBytes: Int = 64 << 10
        public init() {}
        public init(maxBytes: Int64) {
            self.maxBytes = maxBytes
            segmentBytes = max(64 << 10, min(16 << 20, maxBytes / 8))
        }
    }

    public struct ReadResult: Sendable {
        public var readings: [(seq: UInt64, reading: Reading)]
        /// Numbers the reader asked for that are gone (dropped by the byte bound, or lost to a quarantine).
        public var gap: ClosedRange<UInt64>?
    }

    public struct Statistics: Sendable, Hashable {
        public var firstSequence: UInt64?
        public var lastDurableSequence: UInt64
        public var segments: Int
        public var bytes: Int64
        public var readings: Int
        public var droppedReadings: UInt64
        public var droppedInMemory: UInt64
        public var pendingReadings: Int
        public var commits: UInt64
        public var syncs: UInt64
        public var lastError: String?
    }

    private struct Pending {
        var readings: [Reading] = []
        var firstSequence: UInt64 = 1   // of readings[0]
        var nextSequence: UInt64 = 1
        var droppedInMemory: UInt64 = 0
        var approximateBytes = 0

        /// Keeps at most `limit` readings, losing the oldest; returns how many were lost.
        mutating func trim(to limit: Int) -> Int {
            guard readings.count > limit else { return 0 }
            let overflow = readings.count - limit
            readings.removeFirst(overflow)
            firstSequence += UInt64(overflow)
            droppedInMemory += UInt64(overflow)
            return overflow
        }
    }

    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let directory: String
    public nonisolated let options: Options
    private let log: SegmentedLog<ReadingFrames>
    private let fs: any FileIO
    private let clock: any WallClock
    private let logger: Logger
    private let pending: Mutex<Pending>
    /// Highest durable sequence number, readable without entering the actor.
    private let durable: Mutex<UInt64>
    private var waiters: [(upTo: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private let broadcaster = SequenceBroadcaster()
    private let eventStream: AsyncStream<StoreEvent>
    private let eventContinuation: AsyncStream<StoreEvent>.Continuation
    private var droppedReadings: UInt64 = 0
    private var commits: UInt64 = 0
    private var syncs: UInt64 = 0
    private var failing: String?
    private var closed = false
    /// The commit loop is running (`run`): waiters wait for its next commit.
    private var running = false
    /// Frame bytes written to the active segment since its series dictionary was last stated in full (unknown
    /// after open, so the first frame restates it).
    private var bytesSinceRestatement = Int.max / 2
    private let commitSignal: AsyncStream<Void>.Continuation
    private let commitRequests: AsyncStream<Void>
    /// The frames `read(after:)` decoded last, most recent last. Readers take a frame a batch at a time (the uplink
    /// 200 readings, the tally 2,000, of a commit's frames of up to `maxReadingsPerFrame`); reading, checking and
    /// decoding the whole frame again for every batch cost ~61,000 instructions per reading read back at 10,000
    /// readings/s (frames of 8,192, batches of 200), against ~2,600 with the frame kept (Benchmarks/callgrind.sh
    /// encode). Four entries: the uplink and the tally read at their own pace, and a tally batch of 2,000 spans two
    /// frames of 2,048.
    /// A durable frame never changes and its key is never reused (segments are named by their first sequence
    /// number and only dropped whole), so an entry stays right until it is evicted; at most four frames' readings
    /// are kept (about 250 KB each at 2,048 readings; with frames of 8,192 two of them cost 1.2 MB more resident
    /// memory at 10,000 readings/s, Benchmarks/rss.sh).
    private var decodedFrames: [DecodedFrame] = []
    private struct DecodedFrame {
        var path: String
        var offset: Int64
        var firstSequence: UInt64
        var readings: [Reading]
    }
    static let decodedFramesKept = 4

    /// Opens (creating if needed) the store in `directory` and recovers it. Never refuses because of damaged
    /// data; throws only when the directory cannot be used at all or holds a newer format.
    public init(directory: String, options: Options = .init(), fs: any FileIO = PosixFileIO(), clock: any WallClock = SystemClock(),
                bootID: [UInt8] = BootID.current, logger: Logger) async throws(StoreError) {
        self.directory = directory
        self.options = options
        self.fs = fs
        self.clock = clock
        self.logger = logger
        executor = ThreadExecutor(name: "kt-ring")
        (eventStream, eventContinuation) = AsyncStream.makeStream(of: StoreEvent.self, bufferingPolicy: .bufferingNewest(256))
        (commitRequests, commitSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        do {
            log = try SegmentedLog.openStore(fs: fs, storeDirectory: directory, bootID: bootID, clock: clock, logger: logger)
        } catch {
            executor.shutdown()
            throw error
        }
        let next = log.nextSequence
        pending = Mutex(Pending(firstSequence: next, nextSequence: next))
        durable = Mutex(next - 1)
        let report = log.report
        recoveryReport = report
        if !report.isClean { eventContinuation.yield(.recovered(report)) }
        logger.info("ring store opened", metadata: [
            "dir": "\(directory)", "segments": "\(report.segments)", "readings": "\(report.records)",
            "next_seq": "\(next)", "truncated_bytes": "\(report.truncatedBytes)", "quarantined": "\(report.quarantined.count)",
        ])
    }

    // MARK: Writing

    /// Hands readings to the store without waiting for the disk; returns their sequence numbers.
    /// Never blocks on I/O: the poller calls this.
    @discardableResult
    public nonisolated func submit(_ readings: [Reading]) -> ClosedRange<UInt64>? {
        guard !readings.isEmpty else { return nil }
        precondition(readings.allSatisfy { $0.raw.count <= Self.maximumRawWords },
                     "a reading carries at most \(Self.maximumRawWords) raw words")
        let (range, overflow, urgent) = pending.withLock { p -> (ClosedRange<UInt64>, Int, Bool) in
            let first = p.nextSequence
            p.readings.append(contentsOf: readings)
            p.nextSequence += UInt64(readings.count)
            p.approximateBytes += readings.count * 12
            let overflow = p.trim(to: options.maxPendingReadings)
            return (first...(first + UInt64(readings.count) - 1), overflow, p.approximateBytes >= options.syncBytes)
        }
        if overflow > 0 { eventContinuation.yield(.droppedInMemory(readings: overflow)) }
        if urgent { commitSignal.yield() }
        return range
    }

    /// Stores readings now: submits them and commits at once (without waiting for the sync interval).
    /// Returns when they are durable; throws if the commit failed (they stay queued and are retried).
    @discardableResult
    public func append(_ readings: [Reading]) async throws -> ClosedRange<UInt64>? {
        guard let range = submit(readings) else { return nil }
        commit()
        guard durable.withLock({ $0 }) >= range.upperBound else {
            throw StoreError(call: "append", path: directory, errno: 0, detail: failing ?? "not durable")
        }
        return range
    }

    /// Returns once everything up to `seq` is durable. With the commit loop (`run`) running this waits for its
    /// next group commit; without it, it commits now. Throws if the store closes first.
    public func waitUntilDurable(_ seq: UInt64) async throws {
        if durable.withLock({ $0 }) >= seq { return }
        if !running {
            commit()
            if durable.withLock({ $0 }) >= seq { return }
            throw StoreError(call: "commit", path: directory, errno: 0, detail: failing ?? "not durable")
        }
        try await withCheckedThrowingContinuation { waiters.append((seq, $0)) }
    }

    /// When the commit loop last turned (a commit attempted, whether it could write or not), on the monotonic clock:
    /// the daemon's watchdog wants it to keep turning. Nil before `run`.
    public nonisolated var lastCommitLoopTurn: ContinuousClock.Instant? {
        loopTurn.withLock { $0 }
    }
    private let loopTurn = Mutex<ContinuousClock.Instant?>(nil)

    /// Runs the commit loop until the task is cancelled, then commits what is pending one last time.
    public func run() async {
        loopTurn.withLock { $0 = .now }
        running = true
        defer { running = false }
        await withTaskGroup(of: Void.self) { group in
            // A ticker asks for a commit every sync interval; `submit` asks early when enough is pending.
            group.addTask { [commitSignal, options] in
                while !Task.isCancelled {
                    do { try await Task.sleep(for: options.syncInterval) } catch { break }
                    commitSignal.yield()
                }
            }
            for await _ in commitRequests {
                if Task.isCancelled { break }
                commit()
                loopTurn.withLock { $0 = .now }
            }
            group.cancelAll()
        }
        commit()
    }

    /// Writes and syncs everything pending. Safe to call at any time.
    public func commit() {
        guard !closed else { return }
        let (batch, first) = pending.withLock { p -> ([Reading], UInt64) in
            let b = p.readings
            let f = p.firstSequence
            p.readings.removeAll(keepingCapacity: true)
            p.firstSequence = p.nextSequence
            p.approximateBytes = 0
            return (b, f)
        }
        guard !batch.isEmpty else { return }
        do {
            try write(batch, first: first)
            commits += 1
            if failing != nil {
                failing = nil
                logger.notice("store: writing works again")
                eventContinuation.yield(.writeRecovered)
            }
        } catch {
            // Put the readings back in front of anything submitted meanwhile; they keep their numbers.
            let overflow = pending.withLock { p -> Int in
                p.readings.insert(contentsOf: batch, at: 0)
                p.firstSequence = first
                return p.trim(to: options.maxPendingReadings)
            }
            if overflow > 0 { eventContinuation.yield(.droppedInMemory(readings: overflow)) }
            if failing == nil {
                logger.error("store: cannot write readings, keeping them in memory and retrying: \(error)")
                eventContinuation.yield(.writeFailed(error.description))
            }
            failing = error.description
            return
        }
        let last = first + UInt64(batch.count) - 1
        durable.withLock { $0 = last }
        var still: [(UInt64, CheckedContinuation<Void, any Error>)] = []
        for w in waiters {
            if w.upTo <= last { w.continuation.resume() } else { still.append(w) }
        }
        waiters = still
        broadcaster.yield(last)
        enforceBound()
    }

    private func write(_ batch: [Reading], first: UInt64) throws(StoreError) {
        let synced = clock.isSynchronized()
        if log.segments.isEmpty || log.segments.last!.size >= options.segmentBytes {
            try log.startSegment(first: first, clockSynchronized: synced, now: clock.now())
            bytesSinceRestatement = 0  // a new segment's first frame defines everything it uses
        }
        let segment = log.segments.last!
        let (frameCount, size, state) = (segment.frames.count, segment.size, segment.state)
        var dictionary = segment.state
        var frames: [(body: [UInt8], summary: FrameSummary)] = []
        var seq = first
        var start = 0
        var perFrame = options.maxReadingsPerFrame
        while start < batch.count {
            let end = min(batch.count, start + perFrame)
            let slice = batch[start..<end]
            var body: [UInt8] = []
            body.reserveCapacity(slice.count * 12 + 64)
            var trial = dictionary
            // Now and then a frame repeats the segment's whole series dictionary: damage to the frame that first
            // defined a series then costs at most the frames up to the next restatement, not the segment's rest.
            let restate = bytesSinceRestatement >= options.dictionaryRestatementBytes && !dictionary.keys.isEmpty
            BatchCodec.encode(firstSequence: seq, slice, dictionary: &trial, into: &body, restatingDictionary: restate)
            // Frames stay well under the size recovery accepts (readings with many raw words are large).
            if body.count > Self.frameBodyTarget, slice.count > 1 {
                perFrame = max(1, slice.count / 2)
                continue
            }
            dictionary = trial
            bytesSinceRestatement = restate ? 0 : bytesSinceRestatement + body.count + 8
            var minTime = slice[slice.startIndex].time, maxTime = minTime
            for r in slice {
                minTime = min(minTime, r.time)
                maxTime = max(maxTime, r.time)
            }
            frames.append((body, FrameSummary(firstSequence: seq, count: slice.count, minTime: minTime, maxTime: maxTime)))
            seq += UInt64(slice.count)
            start = end
        }
        do throws(StoreError) {
            try log.write(frames: frames, stateAfter: dictionary)
            try log.sync()
            syncs += 1
        } catch {
            // The frames may or may not be on disk: cut them, so they cannot reappear at recovery under numbers
            // that will be written again.
            try? log.rollBack(toFrameCount: frameCount, size: size, state: state)
            throw error
        }
    }

    static let frameBodyTarget = 4 << 20
    /// Raw register words kept per reading, at most (a Modbus read returns at most 125 registers).
    public static let maximumRawWords = 4096

    private func enforceBound() {
        do {
            let dropped = try log.dropOldest(whileLargerThan: options.maxBytes)
            if !dropped.isEmpty {
                decodedFrames.removeAll { e in !log.segments.contains { $0.path == e.path } }
            }
            for d in dropped where d.count > 0 {
                droppedReadings += UInt64(d.count)
                logger.warning("store: byte bound reached, dropped the oldest readings", metadata: [
                    "segment": "\(d.name)", "readings": "\(d.count)", "first_seq": "\(d.first)", "last_seq": "\(d.last)",
                ])
                eventContinuation.yield(.dropped(readings: d.count, firstSequence: d.first, lastSequence: d.last))
            }
        } catch {
            logger.error("store: could not drop old segments: \(error)")
        }
    }

    // MARK: Reading

    /// The highest durable sequence number (0 when nothing is stored yet).
    public nonisolated var lastDurableSequence: UInt64 { durable.withLock { $0 } }
    public var lastSequence: UInt64 { lastDurableSequence }
    public var firstSequence: UInt64? { log.firstSequence }

    /// Up to `limit` durable readings with sequence numbers above `seq`, oldest first, and the gap if some of the
    /// numbers asked for are gone.
    public func read(after seq: UInt64, limit: Int, filter: (@Sendable (Reading) -> Bool)? = nil) throws(StoreError) -> ReadResult {
        let durableUpTo = durable.withLock { $0 }
        var out: [(seq: UInt64, reading: Reading)] = []
        var gap: ClosedRange<UInt64>? = nil
        guard limit > 0, seq < durableUpTo, let start = log.firstFrame(after: seq) else { return ReadResult(readings: [], gap: nil) }
        for s in start.segment..<log.segments.count {
            let segment = log.segments[s]
            for f in (s == start.segment ? start.frame : 0)..<segment.frames.count {
                let frame = segment.frames[f]
                if frame.summary.firstSequence > durableUpTo { return ReadResult(readings: out, gap: gap) }
                if out.isEmpty, gap == nil, frame.summary.firstSequence > seq + 1 {
                    gap = (seq + 1)...(frame.summary.firstSequence - 1)
                }
                let decoded: (firstSequence: UInt64, readings: [Reading])
                do {
                    decoded = try decodedFrame(segment: s, frame: f)
                } catch {
                    // Damaged since it was written (the disk changed under us): its readings are a gap for the
                    // reader, which must not get stuck on it. `store verify` reports the frame.
                    logger.error("store: skipping an unreadable frame", metadata: [
                        "path": "\(segment.path)", "offset": "\(frame.offset)", "first_seq": "\(frame.summary.firstSequence)",
                        "last_seq": "\(frame.summary.lastSequence)", "error": "\(error)",
                    ])
                    if !out.isEmpty { return ReadResult(readings: out, gap: gap) }
                    let lost = max(seq + 1, frame.summary.firstSequence)...frame.summary.lastSequence
                    gap = gap.map { min($0.lowerBound, lost.lowerBound)...lost.upperBound } ?? lost
                    continue
                }
                // From the first reading after `seq`: a reader going through a frame in batches must not step over
                // (and copy) the readings it already has on every call.
                let readings = decoded.readings
                var i = seq >= decoded.firstSequence ? Int(seq - decoded.firstSequence) + 1 : 0
                while i < readings.count {
                    let n = decoded.firstSequence + UInt64(i)
                    if n > durableUpTo { return ReadResult(readings: out, gap: gap) }
                    if filter == nil || filter!(readings[i]) {
                        if out.isEmpty { out.reserveCapacity(min(limit, readings.count - i)) }
                        out.append((n, readings[i]))
                        if out.count >= limit { return ReadResult(readings: out, gap: gap) }
                    }
                    i += 1
                }
            }
        }
        return ReadResult(readings: out, gap: gap)
    }

    /// The readings of frame `f` of segment `s`: from `decodedFrames`, or read, checked and decoded now (and kept).
    private func decodedFrame(segment s: Int, frame f: Int) throws -> (firstSequence: UInt64, readings: [Reading]) {
        let segment = log.segments[s]
        let frame = segment.frames[f]
        if let i = decodedFrames.firstIndex(where: {
            $0.offset == frame.offset && $0.firstSequence == frame.summary.firstSequence && $0.path == segment.path
        }) {
            let hit = decodedFrames.remove(at: i)
            decodedFrames.append(hit)
            return (hit.firstSequence, hit.readings)
        }
        var dictionary = segment.state
        let body = try log.readFrame(segment: s, frame: f)
        let decoded = try BatchCodec.decode(body[...], dictionary: &dictionary)
        if decodedFrames.count >= Self.decodedFramesKept { decodedFrames.removeFirst() }
        decodedFrames.append(DecodedFrame(path: segment.path, offset: frame.offset, firstSequence: frame.summary.firstSequence,
                                          readings: decoded.readings))
        return decoded
    }

    /// Durable readings whose time is in `range`, using each frame's time bounds to skip what cannot match.
    public func read(timeRange range: ClosedRange<UInt64>? = nil, from: UTCInstant, to: UTCInstant, limit: Int = .max,
                     filter: (@Sendable (Reading) -> Bool)? = nil) throws(StoreError) -> [(seq: UInt64, reading: Reading)] {
        let durableUpTo = durable.withLock { $0 }
        var out: [(seq: UInt64, reading: Reading)] = []
        for (s, segment) in log.segments.enumerated() {
            guard let lo = segment.minTime, let hi = segment.maxTime, hi >= from, lo <= to else { continue }
            for (f, frame) in segment.frames.enumerated()
            where frame.summary.maxTime >= from && frame.summary.minTime <= to && frame.summary.firstSequence <= durableUpTo {
                var dictionary = segment.state
                guard let body = try? log.readFrame(segment: s, frame: f),
                      let decoded = try? BatchCodec.decode(body[...], dictionary: &dictionary) else {
                    logger.error("store: skipping an unreadable frame", metadata: ["path": "\(segment.path)", "offset": "\(frame.offset)"])
                    continue
                }
                for (i, r) in decoded.readings.enumerated() where r.time >= from && r.time <= to {
                    let n = decoded.firstSequence + UInt64(i)
                    guard n <= durableUpTo else { continue }
                    if let filter, !filter(r) { continue }
                    out.append((n, r))
                    if out.count >= limit { return out }
                }
            }
        }
        return out
    }


    /// A stream of the highest durable sequence number after each commit (newest only).
    public func updates() -> AsyncStream<UInt64> {
        broadcaster.subscribe(current: durable.withLock { $0 })
    }

    /// Drops, write failures and recoveries, for the daemon to log and publish.
    public nonisolated var events: AsyncStream<StoreEvent> { eventStream }

    public func statistics() -> Statistics {
        let p = pending.withLock { ($0.readings.count, $0.droppedInMemory) }
        return Statistics(firstSequence: log.firstSequence, lastDurableSequence: durable.withLock { $0 },
                          segments: log.segments.count, bytes: log.totalBytes,
                          readings: log.segments.reduce(0) { $0 + $1.count }, droppedReadings: droppedReadings,
                          droppedInMemory: p.1, pendingReadings: p.0, commits: commits, syncs: syncs, lastError: failing)
    }

    /// What recovery found and did when this store was opened.
    public nonisolated let recoveryReport: RecoveryReport

    // MARK: Cursors

    private var cursors: Cursors { Cursors(fs: fs, directory: directory + "/cursors") }

    /// The last sequence number the named reader has finished with (0 = nothing yet).
    public func cursor(_ name: String) throws(StoreError) -> UInt64 { try cursors.read(name) ?? 0 }

    /// Durably moves the named cursor.
    public func setCursor(_ name: String, to seq: UInt64) throws(StoreError) { try cursors.write(name, seq) }

    // MARK: Closing

    /// Commits what is pending, closes the files and ends the store's thread. Waiters still waiting fail.
    public func close() {
        commit()
        closed = true
        log.close()
        decodedFrames.removeAll()
        for w in waiters { w.continuation.resume(throwing: StoreError(call: "close", path: directory, errno: 0, detail: "store closed")) }
        waiters.removeAll()
        broadcaster.finish()
        eventContinuation.finish()
        commitSignal.finish()
        executor.shutdown()
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), stored in every segment header so readings can be told
/// apart across reboots (wall-clock steps at boot are common on boxes without an RTC).
public enum BootID {
    public static let current: [UInt8] = {
        let fs = PosixFileIO()
        let path = "/proc/sys/kernel/random/boot_id"
        guard let file = try? fs.open(path, create: false) else { return Array(repeating: 0, count: 16) }
        defer { fs.close(file) }
        // procfs reports size 0: read what is there (36 characters of a UUID).
        guard let text = try? fs.read(file, path: path, count: 36, at: 0) else { return Array(repeating: 0, count: 16) }
        let hex = text.filter { $0 != UInt8(ascii: "-") }
        var out: [UInt8] = []
        var i = 0
        while i + 1 < hex.count, out.count < 16 {
            guard let b = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else { break }
            out.append(b)
            i += 2
        }
        return out.count == 16 ? out : Array(repeating: 0, count: 16)
    }()
}
