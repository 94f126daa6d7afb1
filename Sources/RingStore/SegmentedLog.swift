import KilnTallyCore
import Logging

/// What the segment layer needs to know of one frame: the sequence numbers and time span it holds.
public struct FrameSummary: Sendable, Hashable {
    public var firstSequence: UInt64
    public var count: Int
    public var minTime: UTCInstant
    public var maxTime: UTCInstant
    public init(firstSequence: UInt64, count: Int, minTime: UTCInstant, maxTime: UTCInstant) {
        self.firstSequence = firstSequence
        self.count = count
        self.minTime = minTime
        self.maxTime = maxTime
    }
    public var lastSequence: UInt64 { firstSequence + UInt64(count) - 1 }
}

/// How the frames of one kind of log are read when a segment is opened (the ring's reading batches, the ledger's
/// records). Frame bodies are opaque to the segment layer.
protocol FrameFormat {
    associatedtype SegmentState
    /// Stored in every segment header, so a segment of one log is never read as the other.
    static var segmentKind: UInt8 { get }
    static var fileExtension: String { get }
    static func emptyState() -> SegmentState
    /// Summarizes a frame whose checksum is good, learning whatever per-segment state later frames rely on.
    static func summarize(_ body: ArraySlice<UInt8>, state: inout SegmentState) throws -> FrameSummary
    /// The fewest bytes (frame header included) one sequence number can take: bounds how many numbers a damaged
    /// region could have held, so none is handed out twice.
    static var minimumBytesPerSequence: Int { get }
    /// The per-segment state as stored in a sealed segment's index file, and back.
    static func encodeState(_ state: SegmentState, into out: inout [UInt8])
    static func decodeState(_ reader: inout ByteReader) -> SegmentState?
}

/// One segment file: `seg-<first sequence, 20 digits>.<ext>`.
///
/// Header (44 bytes): magic `KTSG` · format version u16 · kind u8 · flags u8 (bit 0: clock synchronized at
/// creation) · first sequence u64 · created at (ns since epoch) i64 · boot id (16 bytes) · CRC-32C of the 40
/// bytes before it. Then frames: length u32 · CRC-32C u32 of the body · body. All little-endian.
struct Segment<F: FrameFormat> {
    struct Frame {
        var offset: Int64
        var length: Int
        var summary: FrameSummary
    }

    var path: String
    var name: String
    var header: SegmentHeader
    var frames: [Frame] = []
    var size: Int64
    var state: F.SegmentState

    var firstSequence: UInt64 { frames.first?.summary.firstSequence ?? header.firstSequence }
    var lastSequence: UInt64? { frames.last?.summary.lastSequence }
    var count: Int { frames.reduce(0) { $0 + $1.summary.count } }
    var minTime: UTCInstant? { frames.map(\.summary.minTime).min() }
    var maxTime: UTCInstant? { frames.map(\.summary.maxTime).max() }
}

public struct SegmentHeader: Sendable, Hashable {
    public static let magic: [UInt8] = Array("KTSG".utf8)
    public static let formatVersion: UInt16 = 1
    public static let size = 44

    public var kind: UInt8
    public var clockSynchronized: Bool
    public var firstSequence: UInt64
    public var createdAt: UTCInstant
    public var bootID: [UInt8]  // 16 bytes

    func encoded() -> [UInt8] {
        var b = Self.magic
        b.appendLE16(Self.formatVersion)
        b.append(kind)
        b.append(clockSynchronized ? 1 : 0)
        b.appendLE(firstSequence)
        b.appendLE(UInt64(bitPattern: createdAt.nanosecondsSinceEpoch))
        b.append(contentsOf: bootID.prefix(16))
        if bootID.count < 16 { b.append(contentsOf: repeatElement(0, count: 16 - bootID.count)) }
        b.appendLE(CRC32C.checksum(b))
        return b
    }

    enum DecodeResult { case ok(SegmentHeader), newerVersion(UInt16), damaged(String) }

    static func decode(_ b: [UInt8]) -> DecodeResult {
        guard b.count >= size, Array(b[0..<4]) == magic else { return .damaged("bad magic") }
        var r = ByteReader(b[4..<size])
        let version = UInt16(r.u8()!) | UInt16(r.u8()!) << 8
        if version > formatVersion { return .newerVersion(version) }
        guard CRC32C.checksum(b[0..<40]) == UInt32(b[40]) | UInt32(b[41]) << 8 | UInt32(b[42]) << 16 | UInt32(b[43]) << 24 else {
            return .damaged("header checksum")
        }
        let kind = r.u8()!
        let flags = r.u8()!
        let first = r.u64()!
        let created = Int64(bitPattern: r.u64()!)
        return .ok(SegmentHeader(kind: kind, clockSynchronized: flags & 1 != 0, firstSequence: first,
                                 createdAt: UTCInstant(nanosecondsSinceEpoch: created), bootID: Array(b[24..<40])))
    }
}

/// What recovery found and did at open, for logs, `store verify` and events.
public struct RecoveryReport: Sendable, Hashable {
    public var segments = 0
    public var records = 0
    public var truncatedBytes: Int64 = 0
    public var quarantined: [String] = []
    public var skippedSequences: UInt64 = 0
    /// What was wrong with each segment quarantined now.
    public var damage: [String] = []
    /// Segments quarantined by an earlier open, still kept aside.
    public var alreadyQuarantined: [String] = []
    public var isClean: Bool { truncatedBytes == 0 && quarantined.isEmpty }
}

/// A directory of segment files holding checksummed frames with increasing sequence numbers: the shared engine
/// under the reading ring and the ledger. Not thread-safe: its owner (an actor on its own thread) serializes use.
///
/// Recovery at open never refuses to start because of damaged data: a torn tail of the last segment (a short
/// frame, or a damaged frame followed only by zeros) is cut off; any other damage quarantines the segment (renamed
/// to `*.quarantined`, never deleted) and the log carries on, skipping every sequence number the damaged part
/// could have held. Only a segment written by a newer format version stops the open, with a clear message.
final class SegmentedLog<F: FrameFormat> {
    let fs: any FileIO
    let directory: String
    let logger: Logger
    private(set) var segments: [Segment<F>] = []
    private var active: FileID?
    /// The next sequence number to hand out (after recovery: above everything stored, quarantined or cursored).
    var nextSequence: UInt64 = 1
    private(set) var report = RecoveryReport()
    private let bootID: [UInt8]
    /// Inspect only: recovery reports what it would cut or quarantine and changes nothing (`store verify`).
    let readOnly: Bool

    static var maximumFrameBody: Int { 16 << 20 }

    init(fs: any FileIO, directory: String, bootID: [UInt8], readOnly: Bool = false, logger: Logger) throws(StoreError) {
        self.fs = fs
        self.directory = directory
        self.bootID = bootID
        self.readOnly = readOnly
        self.logger = logger
        if !readOnly { try fs.makeDirectories(directory) }
        try recover()
    }

    var totalBytes: Int64 { segments.reduce(0) { $0 + $1.size } }
    var lastSequence: UInt64? { segments.last(where: { $0.lastSequence != nil })?.lastSequence }
    var firstSequence: UInt64? { segments.first(where: { $0.lastSequence != nil })?.firstSequence }

    static func segmentName(first: UInt64) -> String {
        let digits = String(first)
        return "seg-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + F.fileExtension
    }

    // MARK: Recovery

    private func recover() throws(StoreError) {
        let suffix = "." + F.fileExtension
        var all = try fs.list(directory)
        if !readOnly {
            for stale in all where stale.hasSuffix(".salvage") {
                let original = String(stale.dropLast(".salvage".count))
                if all.contains(original) {
                    // The salvage did not get as far as moving the original aside: it is still in place.
                    try fs.remove(directory + "/" + stale)
                } else {
                    // The original was moved aside but the salvaged copy (complete: synced before any rename) was
                    // not yet renamed into place: finish the salvage.
                    try fs.rename(directory + "/" + stale, to: directory + "/" + original)
                    logger.warning("store: finished a salvage a crash interrupted", metadata: ["path": "\(directory)/\(original)"])
                }
            }
            for stale in all where stale.hasSuffix(".idx.tmp") { try fs.remove(directory + "/" + stale) }
            try fs.syncDirectory(directory)
            all = try fs.list(directory)
        }
        let names = all.filter { $0.hasPrefix("seg-") && $0.hasSuffix(suffix) }.sorted()
        var highestSeen: UInt64 = 0
        /// A floor for numbers lost in a file that could not be read: its first number (from its name, which
        /// survives a damaged header) plus as many numbers as its bytes could have held.
        func reserve(_ name: String, bytes: Int64) {
            let first = UInt64(name.dropFirst(4).prefix(20)) ?? 0
            let skipped = UInt64(max(bytes, 0)) / UInt64(F.minimumBytesPerSequence) + 1
            report.skippedSequences += skipped
            highestSeen = max(highestSeen, first + skipped)
        }
        for (i, name) in names.enumerated() {
            let isLast = i == names.count - 1
            let path = directory + "/" + name
            let file = try fs.open(path, create: false)
            defer { fs.close(file) }
            let size = try fs.size(file, path: path)
            if size < Int64(SegmentHeader.size) {
                if isLast {
                    // Torn while the segment was being created: nothing in it was ever durable.
                    if !readOnly {
                        try fs.remove(path)
                        try fs.syncDirectory(directory)
                    }
                    report.truncatedBytes += size
                    logger.warning("store: removed a segment torn at creation", metadata: ["path": "\(path)"])
                } else {
                    reserve(name, bytes: size)
                    try quarantine(path, reason: "shorter than its header")
                }
                continue
            }
            let header: SegmentHeader
            switch SegmentHeader.decode(try fs.read(file, path: path, count: SegmentHeader.size, at: 0)) {
            case .ok(let h) where h.kind == F.segmentKind:
                header = h
            case .ok(let h):
                reserve(name, bytes: size)
                try quarantine(path, reason: "segment kind \(h.kind), expected \(F.segmentKind)")
                continue
            case .newerVersion(let v):
                throw StoreError(call: "open", path: path, errno: 0,
                                 detail: "segment format version \(v) is newer than this binary reads (\(SegmentHeader.formatVersion)); "
                                     + "run the newer kilntally or move the store aside")
            case .damaged(let why):
                reserve(name, bytes: size)
                try quarantine(path, reason: "header: \(why)")
                continue
            }
            highestSeen = max(highestSeen, header.firstSequence == 0 ? 0 : header.firstSequence - 1)
            var segment = Segment<F>(path: path, name: name, header: header, size: size, state: F.emptyState())
            // A sealed segment with a valid index is not read at open (its frames' checksums are still checked on
            // every read and by `store verify`); the last segment is always scanned.
            if !isLast, let indexed = loadIndex(for: segment, lastBefore: lastSequence) {
                segment = indexed
                if let last = segment.lastSequence { highestSeen = max(highestSeen, last) }
                report.records += segment.count
                segments.append(segment)
                continue
            }
            let scan = try scanFrames(file, path: path, size: size, into: &segment)
            if let last = segment.lastSequence { highestSeen = max(highestSeen, last) }
            let firstBad = scan.damaged.first?.offset ?? scan.end
            if firstBad < size {
                // Torn tail: only the last segment, nothing good after the first bad byte, and what follows the
                // first damaged frame is nothing or zeros (blocks allocated but never written).
                let goodAfter = segment.frames.contains { $0.offset > firstBad }
                var torn = isLast && !goodAfter
                if torn, let d = scan.damaged.first {
                    torn = try isZeroFilled(file, path: path, from: d.end, to: size)
                } else if torn, scan.stopReason != nil {
                    torn = try isZeroFilled(file, path: path, from: scan.end, to: size)
                }
                if torn {
                    if let d = scan.damaged.first {
                        // A full-length frame with a bad checksum may have been durable (bit rot, not a torn write):
                        // keep its bytes aside and never hand its numbers out again.
                        reserveAfter(segment: segment, header: header, lostBytes: d.end - d.offset, into: &highestSeen)
                        if !readOnly { try keepAside(file, path: path, from: firstBad, to: size) }
                    }
                    if !readOnly {
                        try fs.truncate(file, path: path, to: firstBad)
                        try fs.sync(file, path: path)
                    }
                    segment.size = firstBad
                    report.truncatedBytes += size - firstBad
                    logger.warning("store: cut a torn tail", metadata: ["path": "\(path)", "bytes": "\(size - firstBad)"])
                } else {
                    // Damage inside the log: keep the whole file aside, carry on with its good frames. Every byte
                    // that did not make it (damaged frames and an unreadable tail) may have held numbers.
                    let lost = scan.damaged.reduce(size - scan.end) { $0 + ($1.end - $1.offset) }
                    reserveAfter(segment: segment, header: header, lostBytes: lost, into: &highestSeen)
                    let reasons = scan.damaged.map(\.reason) + (scan.stopReason.map { [$0] } ?? [])
                    try salvage(&segment, from: file, reason: reasons.joined(separator: "; "))
                }
            }
            report.records += segment.count
            segments.append(segment)
        }
        report.segments = segments.count
        report.alreadyQuarantined = try fs.list(directory).filter { $0.contains(".quarantined") }.sorted()
            .filter { name in !report.quarantined.contains { $0.hasSuffix("/" + name) } }
        nextSequence = max(nextSequence, highestSeen + 1)
        if let last = segments.last, !readOnly {
            active = try fs.open(last.path, create: false)
            // After a SIGKILL the page cache may hold frames that were written but never synced: recovery just
            // read them, and from now on they count as durable, so make them so (and any directory entry a killed
            // process created but did not sync).
            try fs.sync(active!, path: last.path)
        }
        if !readOnly { try fs.syncDirectory(directory) }
    }

    /// Opens a store's log for writing under `storeDirectory` (`segments/` and `cursors/`): recovers it, makes the
    /// cursor directory durable, floors numbering above every cursor (numbers a reader acknowledged are never
    /// handed out again, even if their segments are gone) and makes any reservation of skipped numbers durable.
    static func openStore(fs: any FileIO, storeDirectory: String, bootID: [UInt8], clock: any WallClock,
                          logger: Logger) throws(StoreError) -> SegmentedLog {
        let cursors = storeDirectory + "/cursors"
        try fs.makeDirectories(cursors)
        let log = try SegmentedLog(fs: fs, directory: storeDirectory + "/segments", bootID: bootID, logger: logger)
        try fs.syncDirectory(cursors)
        try log.persistReservation(clockSynchronized: clock.isSynchronized(), now: clock.now())
        log.nextSequence = max(log.nextSequence, Cursors(fs: fs, directory: cursors).highest() + 1)
        return log
    }

    /// Makes a reservation of skipped numbers survive a restart: an empty segment whose name and header start at
    /// the next number to hand out (recovery floors numbering at every segment's first sequence).
    func persistReservation(clockSynchronized: Bool, now: UTCInstant) throws(StoreError) {
        guard !readOnly, report.skippedSequences > 0 else { return }
        if let last = segments.last, let lastSeq = last.lastSequence, lastSeq + 1 >= nextSequence { return }
        try startSegment(first: nextSequence, clockSynchronized: clockSynchronized, now: now)
        nextSequence = max(nextSequence, segments.last!.header.firstSequence)
    }

    private func reserveAfter(segment: Segment<F>, header: SegmentHeader, lostBytes: Int64, into highestSeen: inout UInt64) {
        let skipped = UInt64(max(lostBytes, 0)) / UInt64(F.minimumBytesPerSequence) + 1
        report.skippedSequences += skipped
        highestSeen = max(highestSeen, max(segment.lastSequence ?? 0, header.firstSequence) + skipped)
    }

    /// Copies bytes about to be cut into `<segment>.tail.quarantined` (synced) so nothing is destroyed unseen.
    private func keepAside(_ file: FileID, path: String, from: Int64, to: Int64) throws(StoreError) {
        let bytes = try fs.read(file, path: path, count: Int(to - from), at: from)
        let aside = try quarantineName(path + ".tail")
        let out = try fs.open(aside, create: true)
        defer { fs.close(out) }
        try fs.write(out, path: aside, bytes, at: 0)
        try fs.sync(out, path: aside)
        try fs.syncDirectory(directory)
        report.quarantined.append(aside)
    }

    struct Scan {
        /// Where scanning stopped: the file size, or the start of a short/garbled frame.
        var end: Int64
        /// Frames skipped because their checksum or content was bad: (offset, end, reason).
        var damaged: [(offset: Int64, end: Int64, reason: String)] = []
        /// Why scanning stopped before the end, if it did because of a garbled frame header.
        var stopReason: String?
    }

    /// Reads the frames of a segment into its index. A frame with a plausible length but a bad checksum is
    /// skipped and scanning resumes after it, so one bad block costs one frame, not the rest of the segment.
    private func scanFrames(_ file: FileID, path: String, size: Int64, into segment: inout Segment<F>) throws(StoreError) -> Scan {
        var offset = Int64(SegmentHeader.size)
        var scan = Scan(end: size)
        // Read in large chunks: a frame-by-frame pread would cost two system calls per frame.
        let chunk = 4 << 20
        var buffer: [UInt8] = []
        var bufferStart: Int64 = offset
        func bytes(_ at: Int64, _ count: Int) throws(StoreError) -> ArraySlice<UInt8> {
            if at < bufferStart || at + Int64(count) > bufferStart + Int64(buffer.count) {
                let n = Int(min(size - at, Int64(max(chunk, count))))
                buffer = try fs.read(file, path: path, count: n, at: at)
                bufferStart = at
            }
            let s = Int(at - bufferStart)
            return buffer[s..<s + count]
        }
        while offset < size {
            guard offset + 8 <= size else { scan.end = offset; return scan }
            var hr = ByteReader(try bytes(offset, 8))
            let length = Int(hr.u32()!)
            let crc = hr.u32()!
            guard length > 0, length <= Self.maximumFrameBody else {
                scan.end = offset
                scan.stopReason = "frame length \(length) at offset \(offset)"
                return scan
            }
            let frameEnd = offset + 8 + Int64(length)
            guard frameEnd <= size else { scan.end = offset; return scan }
            let body = try bytes(offset + 8, length)
            guard CRC32C.checksum(body) == crc else {
                scan.damaged.append((offset, frameEnd, "bad checksum at offset \(offset)"))
                offset = frameEnd
                continue
            }
            var state = segment.state
            let summary: FrameSummary
            do {
                summary = try F.summarize(body, state: &state)
            } catch {
                scan.damaged.append((offset, frameEnd, "undecodable frame at offset \(offset): \(error)"))
                offset = frameEnd
                continue
            }
            if let last = segment.lastSequence ?? lastSequence, summary.firstSequence <= last {
                scan.damaged.append((offset, frameEnd, "sequence \(summary.firstSequence) does not follow \(last) at offset \(offset)"))
                offset = frameEnd
                continue
            }
            segment.state = state
            segment.frames.append(.init(offset: offset, length: length, summary: summary))
            offset = frameEnd
        }
        return scan
    }

    private func isZeroFilled(_ file: FileID, path: String, from start: Int64, to end: Int64) throws(StoreError) -> Bool {
        var at = start
        while at < end {
            let chunk = try fs.read(file, path: path, count: Int(min(end - at, 1 << 20)), at: at)
            if chunk.contains(where: { $0 != 0 }) { return false }
            at += Int64(chunk.count)
        }
        return true
    }

    // MARK: Segment index files

    /// `seg-….<ext>.idx`: magic `KTIX` · version u16 · kind u8 · segment size u64 · frame count varint · per frame
    /// (offset delta, length, first sequence, count as varints; min and max time as i64) · the segment state ·
    /// CRC-32C u32 of everything before it. Written when a segment is sealed; an optimization only — a missing or
    /// damaged index just means the segment is scanned.
    static var indexMagic: [UInt8] { Array("KTIX".utf8) }
    static var indexVersion: UInt16 { 1 }

    private func writeIndex(_ segment: Segment<F>) {
        guard !readOnly else { return }
        var b = Self.indexMagic
        b.appendLE16(Self.indexVersion)
        b.append(F.segmentKind)
        b.appendLE(UInt64(segment.size))
        b.appendVarint(UInt64(segment.frames.count))
        var previous: Int64 = 0
        for f in segment.frames {
            b.appendVarint(UInt64(f.offset - previous))
            previous = f.offset
            b.appendVarint(UInt64(f.length))
            b.appendVarint(f.summary.firstSequence)
            b.appendVarint(UInt64(f.summary.count))
            b.appendLE(UInt64(bitPattern: f.summary.minTime.nanosecondsSinceEpoch))
            b.appendLE(UInt64(bitPattern: f.summary.maxTime.nanosecondsSinceEpoch))
        }
        F.encodeState(segment.state, into: &b)
        // Bind the index to this exact file: its header checksum and its last frame's checksum.
        b.appendLE(CRC32C.checksum(segment.header.encoded().prefix(40)))
        b.appendLE(lastFrameCRC(segment) ?? 0)
        b.appendLE(CRC32C.checksum(b))
        let path = segment.path + ".idx"
        let temp = path + ".tmp"
        do {
            let file = try fs.open(temp, create: true)
            defer { fs.close(file) }
            try fs.truncate(file, path: temp, to: 0)
            try fs.write(file, path: temp, b, at: 0)
            try fs.sync(file, path: temp)
            try fs.rename(temp, to: path)
        } catch {
            logger.warning("store: segment index not written (the segment will be scanned at open): \(error)")
        }
    }

    private func loadIndex(for segment: Segment<F>, lastBefore: UInt64?) -> Segment<F>? {
        let path = segment.path + ".idx"
        guard let file = try? fs.open(path, create: false) else { return nil }
        defer { fs.close(file) }
        guard let size = try? fs.size(file, path: path), size > 16, size < 64 << 20,
              let b = try? fs.read(file, path: path, count: Int(size), at: 0) else { return nil }
        let body = b[0..<(b.count - 4)]
        var cr = ByteReader(b[(b.count - 4)...])
        guard CRC32C.checksum(body) == cr.u32(), Array(b[0..<4]) == Self.indexMagic else { return nil }
        var r = ByteReader(body[4...])
        guard let lo = r.u8(), let hi = r.u8(), UInt16(lo) | UInt16(hi) << 8 == Self.indexVersion,
              r.u8() == F.segmentKind, let segSize = r.u64(), Int64(segSize) == segment.size,
              let n = r.varint(), n < 10_000_000 else { return nil }
        var out = segment
        var offset: Int64 = 0
        var previousLast = lastBefore
        for _ in 0..<n {
            guard let d = r.varint(), let len = r.varint(), let first = r.varint(), let count = r.varint(),
                  let minT = r.u64(), let maxT = r.u64() else { return nil }
            offset += Int64(d)
            guard offset + 8 + Int64(len) <= segment.size, count > 0 else { return nil }
            if let p = previousLast, first <= p { return nil }
            let summary = FrameSummary(firstSequence: first, count: Int(count),
                                       minTime: UTCInstant(nanosecondsSinceEpoch: Int64(bitPattern: minT)),
                                       maxTime: UTCInstant(nanosecondsSinceEpoch: Int64(bitPattern: maxT)))
            previousLast = summary.lastSequence
            out.frames.append(.init(offset: offset, length: Int(len), summary: summary))
        }
        guard let state = F.decodeState(&r), let headerCRC = r.u32(), let lastCRC = r.u32(), r.bytes.isEmpty,
              headerCRC == CRC32C.checksum(segment.header.encoded().prefix(40)),
              lastCRC == (lastFrameCRC(out) ?? 0) else { return nil }
        out.state = state
        return out
    }

    /// The stored checksum of a segment's last frame (read from its frame header), nil if it has none.
    private func lastFrameCRC(_ segment: Segment<F>) -> UInt32? {
        guard let last = segment.frames.last, let file = try? fs.open(segment.path, create: false) else { return nil }
        defer { fs.close(file) }
        guard let b = try? fs.read(file, path: segment.path, count: 8, at: last.offset) else { return nil }
        var r = ByteReader(b[4..<8])
        return r.u32()
    }

    private func removeIndex(of segmentPath: String) {
        guard !readOnly else { return }
        try? fs.remove(segmentPath + ".idx")
    }

    /// A segment with damage inside: its good frames are written to a new file (synced), the original is kept
    /// aside whole (`*.quarantined`), and the new file takes its place. Until the new file is complete the original
    /// stays where it was, so a crash part-way leaves the store as it was before.
    private func salvage(_ segment: inout Segment<F>, from file: FileID, reason: String) throws(StoreError) {
        report.damage.append("\(segment.path): \(reason)")
        if readOnly {
            report.quarantined.append(segment.path)
            return
        }
        var out = segment.header.encoded()
        var frames: [Segment<F>.Frame] = []
        for frame in segment.frames {
            let bytes = try fs.read(file, path: segment.path, count: frame.length + 8, at: frame.offset)
            frames.append(.init(offset: Int64(out.count), length: frame.length, summary: frame.summary))
            out.append(contentsOf: bytes)
        }
        let temp = segment.path + ".salvage"
        let t = try fs.open(temp, create: true)
        do {
            try fs.truncate(t, path: temp, to: 0)
            try fs.write(t, path: temp, out, at: 0)
            try fs.sync(t, path: temp)
        } catch {
            fs.close(t)
            throw error
        }
        fs.close(t)
        let aside = try quarantineName(segment.path)
        removeIndex(of: segment.path)
        try fs.rename(segment.path, to: aside)
        try fs.rename(temp, to: segment.path)
        try fs.syncDirectory(directory)
        segment.frames = frames
        segment.size = Int64(out.count)
        report.quarantined.append(aside)
        logger.error("store: damaged segment salvaged: its good frames stay in the store, the original is kept aside",
                     metadata: ["path": "\(segment.path)", "original_moved_to": "\(aside)", "reason": "\(reason)",
                                "frames_kept": "\(frames.count)"])
    }

    private func quarantineName(_ path: String) throws(StoreError) -> String {
        var target = path + ".quarantined"
        var n = 1
        let existing = Set(try fs.list(directory).map { directory + "/" + $0 })
        while existing.contains(target) {
            n += 1
            target = path + ".quarantined-\(n)"
        }
        return target
    }

    private func quarantine(_ path: String, reason: String) throws(StoreError) {
        if readOnly {
            report.quarantined.append(path)
            report.damage.append("\(path): \(reason)")
            return
        }
        let target = try quarantineName(path)
        removeIndex(of: path)
        try fs.rename(path, to: target)
        try fs.syncDirectory(directory)
        report.quarantined.append(target)
        report.damage.append("\(path): \(reason)")
        logger.error("store: quarantined a damaged segment; the store carries on without it",
                     metadata: ["path": "\(path)", "moved_to": "\(target)", "reason": "\(reason)"])
    }

    // MARK: Writing

    /// Starts a new segment whose first sequence is `first`: created, header written and synced, directory synced,
    /// all before anything is appended to it.
    func startSegment(first: UInt64, clockSynchronized: Bool, now: UTCInstant) throws(StoreError) {
        if let poisoned { throw poisoned }
        let name = Self.segmentName(first: first)
        let path = directory + "/" + name
        // A segment of the log is never started again: that truncates it, and with its file listed twice, dropping
        // the older entry would delete the file the newer one is written to. The one exception is the last segment
        // while it holds nothing — a reservation an earlier open made, found again with new damage below it, or the
        // ledger's segment of a month whose first record failed to write, reached again the next month: it is
        // replaced, header and all, and listed once.
        if let i = segments.firstIndex(where: { $0.path == path }) {
            guard i == segments.count - 1, segments[i].frames.isEmpty else {
                throw StoreError(call: "open", path: path, errno: EEXIST, detail: "a segment of this name is already in the log")
            }
            if let active { fs.close(active) }
            active = nil
            segments.removeLast()
        }
        if let active {
            // The segment being sealed gets its index, so the next open need not read it (the directory sync
            // below makes the index's name durable too).
            if let sealed = segments.last { writeIndex(sealed) }
            fs.close(active)
        }
        active = nil
        let header = SegmentHeader(kind: F.segmentKind, clockSynchronized: clockSynchronized, firstSequence: first,
                                   createdAt: now, bootID: bootID)
        let file = try fs.open(path, create: true)
        do {
            try fs.truncate(file, path: path, to: 0)
            try fs.write(file, path: path, header.encoded(), at: 0)
            try fs.sync(file, path: path)
            try fs.syncDirectory(directory)
        } catch {
            fs.close(file)
            throw error
        }
        active = file
        segments.append(Segment(path: path, name: name, header: header, size: Int64(SegmentHeader.size), state: F.emptyState()))
    }

    /// Writes frames to the active segment (not yet durable: call `sync`). On failure the segment is cut back to
    /// where it was, so a later append starts clean.
    func write(frames: [(body: [UInt8], summary: FrameSummary)], stateAfter: F.SegmentState) throws(StoreError) {
        if let poisoned { throw poisoned }
        guard let active, var segment = segments.last else {
            throw StoreError(call: "write", path: directory, errno: 0, detail: "no active segment")
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(frames.reduce(0) { $0 + $1.body.count + 8 })
        var index: [Segment<F>.Frame] = []
        for (body, summary) in frames {
            index.append(.init(offset: segment.size + Int64(buffer.count), length: body.count, summary: summary))
            buffer.appendLE(UInt32(body.count))
            buffer.appendLE(CRC32C.checksum(body))
            buffer.append(contentsOf: body)
        }
        do {
            try fs.write(active, path: segment.path, buffer, at: segment.size)
        } catch {
            try? fs.truncate(active, path: segment.path, to: segment.size)
            throw error
        }
        segment.frames.append(contentsOf: index)
        segment.size += Int64(buffer.count)
        segment.state = stateAfter
        segments[segments.count - 1] = segment
        if let last = index.last { nextSequence = max(nextSequence, last.summary.lastSequence + 1) }
    }

    /// Forgets frames written since `frameCount`/`size` after a failed sync (their durability is unknown), and cuts
    /// the file back so they cannot come back at recovery under numbers handed out again.
    func rollBack(toFrameCount frameCount: Int, size: Int64, state: F.SegmentState) throws(StoreError) {
        guard let active, var segment = segments.last else { return }
        let firstRemoved = segment.frames.count > frameCount ? segment.frames[frameCount].summary.firstSequence : nil
        segment.frames.removeSubrange(frameCount...)
        segment.size = size
        segment.state = state
        segments[segments.count - 1] = segment
        do {
            try fs.truncate(active, path: segment.path, to: size)
            try fs.sync(active, path: segment.path)
        } catch {
            // The frames may still be on disk: their numbers are never handed out again, and nothing more is
            // written until the log is reopened (recovery then decides what is there).
            poisoned = StoreError(call: error.call, path: error.path, errno: error.errno,
                                  detail: "could not undo a failed write; writes refused until the store is reopened")
            logger.critical("store: \(poisoned!)")
            throw error
        }
        // Provably gone: the numbers can be used again.
        if let firstRemoved { nextSequence = firstRemoved }
    }

    /// Set when a failed write could not be undone.
    private(set) var poisoned: StoreError?

    func sync() throws(StoreError) {
        guard let active, let segment = segments.last else { return }
        try fs.sync(active, path: segment.path)
    }

    /// Removes the oldest segments (never the active one) while the log is larger than `maxBytes`.
    /// Returns the summaries of what was dropped.
    func dropOldest(whileLargerThan maxBytes: Int64) throws(StoreError) -> [(name: String, count: Int, first: UInt64, last: UInt64)] {
        var dropped: [(String, Int, UInt64, UInt64)] = []
        while totalBytes > maxBytes, segments.count > 1 {
            let oldest = segments.removeFirst()
            if reader?.path == oldest.path { closeReader() }
            // Index first: a crash in between must not leave an index without its segment.
            removeIndex(of: oldest.path)
            try fs.remove(oldest.path)
            dropped.append((oldest.name, oldest.count, oldest.firstSequence, oldest.lastSequence ?? oldest.firstSequence))
        }
        if !dropped.isEmpty { try fs.syncDirectory(directory) }
        return dropped
    }

    /// Reads a frame body and checks its checksum again (the disk may have changed since open).
    func readFrame(segment s: Int, frame f: Int) throws(StoreError) -> [UInt8] {
        let segment = segments[s]
        let frame = segment.frames[f]
        let file: FileID
        if s == segments.count - 1, let active {
            file = active
        } else if let cached = reader, cached.path == segment.path {
            file = cached.file
        } else {
            // Readers move forward through sealed segments: keep the one being read open rather than opening it
            // again for every frame.
            if let cached = reader { fs.close(cached.file) }
            reader = nil
            file = try fs.open(segment.path, create: false)
            reader = (segment.path, file)
        }
        let bytes = try fs.read(file, path: segment.path, count: frame.length + 8, at: frame.offset)
        var hr = ByteReader(bytes[0..<8])
        _ = hr.u32()
        let crc = hr.u32()!
        let body = Array(bytes[8...])
        guard CRC32C.checksum(body) == crc else {
            throw StoreError(call: "read", path: segment.path, errno: EIO, detail: "frame at offset \(frame.offset) no longer matches its checksum")
        }
        return body
    }

    func close() {
        if let active { fs.close(active) }
        active = nil
        closeReader()
    }

    /// The sealed segment kept open for reading, if any.
    private var reader: (path: String, file: FileID)?

    private func closeReader() {
        if let reader { fs.close(reader.file) }
        reader = nil
    }

    /// Where reading after `seq` starts: the first frame (in segment order) holding a number above `seq`.
    /// Segments and frames are in sequence order, so this is a binary search within the segment, not a walk
    /// from the oldest frame (a full ring holds millions of frames).
    func firstFrame(after seq: UInt64) -> (segment: Int, frame: Int)? {
        for (s, segment) in segments.enumerated() {
            guard let last = segment.lastSequence, last > seq else { continue }
            var lo = 0, hi = segment.frames.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if segment.frames[mid].summary.lastSequence <= seq { lo = mid + 1 } else { hi = mid }
            }
            return (s, lo)
        }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
