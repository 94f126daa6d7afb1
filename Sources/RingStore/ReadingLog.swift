import KilnTallyCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A failed file operation of the store: names the call, the path and errno.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var path: String
    public var errno: Int32
    public var detail: String?

    public init(call: String, path: String, errno: Int32, detail: String? = nil) {
        self.call = call
        self.path = path
        self.errno = errno
        self.detail = detail
    }

    public var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }

    public var description: String {
        var s = "store: \(call)(\(path)) failed"
        if errno != 0 { s += ": \(String(cString: strerror(errno))) (errno \(errno))" }
        if let detail { s += ": \(detail)" }
        return s
    }
}

/// The walking skeleton's reading store: one append-only file of checksummed records plus durable named cursors.
///
/// What it already promises: a batch is durable (written and fsynced) when `append` returns; a torn or corrupt tail
/// (power cut mid-write) is truncated at open and earlier records are kept; sequence numbers only increase, across
/// restarts too; cursors are replaced atomically (write, fsync, rename, fsync directory).
/// What it does not do yet (issue 4's RingStore): a byte bound with oldest-first drops, segments, group commit,
/// quarantine of unreadable files, a time index.
///
/// File format: an 8-byte header `KTRL` + version u16 + reserved u16, then records of
/// `length u32 · crc32c u32 (over the body) · body` with the body as in `ReadingCodec`.
public actor ReadingLog {
    public static let magic: [UInt8] = Array("KTRL".utf8)
    public static let formatVersion: UInt16 = 1
    static let headerSize = 8

    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let directory: String
    private let path: String
    private let logger: Logger
    private var fd: Int32 = -1
    private var endOffset: Int64 = 0
    /// In-memory index: record i has sequence number `sequences[i]` and starts at `offsets[i]`. Sequences increase;
    /// they are contiguous except after a quarantine, which skips numbers rather than risk reusing one.
    private var offsets: [Int64] = []
    private var sequences: [UInt64] = []
    private var nextSequence: UInt64 = 1
    /// Set when a write or fsync failed and the file could not be cut back: appends refuse until reopened,
    /// because a later, shorter batch could otherwise leave a stale record that recovery would accept.
    private var poisoned: StoreError?
    private var subscribers: [Int: AsyncStream<UInt64>.Continuation] = [:]
    private var nextSubscriber = 0

    /// Opens (creating if needed) the store in `directory`, recovering from a torn tail.
    public init(directory: String, logger: Logger) async throws(StoreError) {
        self.directory = directory
        self.path = directory + "/readings.log"
        self.logger = logger
        self.executor = ThreadExecutor(name: "kt-store")
        do {
            try self.openAndRecover()
        } catch {
            if fd >= 0 { Glibc.close(fd) }
            executor.shutdown()
            throw error
        }
    }

    private func openAndRecover() throws(StoreError) {
        try Self.makeDirectories(directory)
        try Self.makeDirectories(directory + "/cursors")
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw StoreError(call: "open", path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError(call: "fstat", path: path, errno: errno) }
        let size = Int64(st.st_size)
        if size < Int64(Self.headerSize) {
            // New (or a header torn at creation): write the header and make it durable.
            var header = Self.magic
            header.appendLE16(Self.formatVersion)
            header.appendLE16(0)
            try pwriteAll(header, at: 0)
            guard ftruncate(fd, off_t(Int64(Self.headerSize))) == 0 else { throw StoreError(call: "ftruncate", path: path, errno: errno) }
            try fsyncFile()
            try Self.fsyncDirectory(directory)
            endOffset = Int64(Self.headerSize)
            logger.debug("store created", metadata: ["path": "\(path)"])
            try applySequenceFloor()
            return
        }
        let header = try preadAll(count: Self.headerSize, at: 0)
        guard Array(header[0..<4]) == Self.magic else {
            throw StoreError(call: "open", path: path, errno: 0, detail: "not a kilntally reading log (bad magic)")
        }
        let version = UInt16(header[4]) | UInt16(header[5]) << 8
        guard version == Self.formatVersion else {
            throw StoreError(call: "open", path: path, errno: 0,
                             detail: "format version \(version) is newer than this binary understands (\(Self.formatVersion))")
        }
        // Scan records up to the first that is short, fails its checksum or does not decode.
        var offset = Int64(Self.headerSize)
        var damage: String? = nil
        var damageEnd = size  // where the damaged region's first record ends (its start, if its length is garbage)
        scan: while offset < size {
            guard offset + 8 <= size else { break scan }  // torn record header
            let head = try preadAll(count: 8, at: offset)
            var hr = ByteReader(head[...])
            let length = Int64(hr.u32()!)
            let crc = hr.u32()!
            guard length >= Int64(Self.minimumBodySize), length <= Int64(Self.maximumBodySize) else {
                damage = "record length \(length) at offset \(offset)"
                damageEnd = offset
                break scan
            }
            guard offset + 8 + length <= size else { break scan }  // torn record body
            let body = try preadAll(count: Int(length), at: offset + 8)
            guard CRC32C.checksum(body) == crc, let (seq, _) = ReadingCodec.decode(body[...]) else {
                damage = "bad checksum or undecodable record at offset \(offset)"
                damageEnd = offset + 8 + length
                break scan
            }
            if let last = sequences.last, seq <= last {
                damage = "sequence \(seq) after \(last) at offset \(offset)"
                damageEnd = offset
                break scan
            }
            offsets.append(offset)
            sequences.append(seq)
            offset += 8 + length
        }
        nextSequence = (sequences.last ?? 0) + 1
        if offset < size {
            // A power cut tears only the batch in flight, which was never reported durable: a short record at the
            // end, or a damaged record followed by nothing but zeros (blocks allocated but never written) is the torn
            // tail and is cut off. Damage followed by intact-looking data is not a torn write: that file is
            // quarantined, never cut.
            var tornTail = damage == nil
            if !tornTail { tornTail = try isZeroFilled(from: damageEnd, to: size) }
            if !tornTail { tornTail = try isZeroFilled(from: offset, to: size) }
            if tornTail {
                logger.warning("store: truncating a torn tail", metadata: [
                    "path": "\(path)", "valid_bytes": "\(offset)", "dropped_bytes": "\(size - offset)",
                ])
                guard ftruncate(fd, off_t(offset)) == 0 else { throw StoreError(call: "ftruncate", path: path, errno: errno) }
                try fsyncFile()
            } else {
                try quarantine(validPrefixEnd: offset, size: size, reason: damage ?? "damaged record")
            }
        }
        endOffset = offset
        try applySequenceFloor()
        logger.info("store opened", metadata: [
            "path": "\(path)", "records": "\(offsets.count)", "next_seq": "\(nextSequence)",
        ])
    }

    /// Smallest and largest record bodies `ReadingCodec` writes (empty strings and no raw words; 4096 raw words
    /// and generous strings). Recovery treats lengths outside these bounds as damage, and append enforces them.
    static let minimumBodySize = 23
    static let maximumBodySize = 1 << 20

    private func isZeroFilled(from start: Int64, to end: Int64) throws(StoreError) -> Bool {
        var at = start
        while at < end {
            let chunk = try preadAll(count: Int(min(end - at, 65536)), at: at)
            if chunk.contains(where: { $0 != 0 }) { return false }
            at += Int64(chunk.count)
        }
        return true
    }

    /// Mid-file damage: the whole file is kept aside (renamed, never deleted) for inspection, and a new log holds
    /// the valid records before the damage. Sequence numbers skip past every record the damaged part could hold,
    /// so no number is ever handed out twice: a reader sees a gap, not a different reading under a known number.
    private func quarantine(validPrefixEnd: Int64, size: Int64, reason: String) throws(StoreError) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let aside = "\(path).damaged-\(now.tv_sec)"
        let prefix = try preadAll(count: Int(validPrefixEnd), at: 0)
        Glibc.close(fd)
        fd = -1
        guard rename(path, aside) == 0 else { throw StoreError(call: "rename", path: aside, errno: errno) }
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw StoreError(call: "open", path: path, errno: errno) }
        try pwriteAll(prefix, at: 0)
        try fsyncFile()
        try Self.fsyncDirectory(directory)
        let unreadable = size - validPrefixEnd
        let skipped = UInt64(unreadable / Int64(8 + Self.minimumBodySize)) + 1
        nextSequence += skipped
        logger.error("store: damaged reading log quarantined; the records before the damage were kept", metadata: [
            "path": "\(path)", "quarantined_as": "\(aside)", "reason": "\(reason)", "kept_records": "\(offsets.count)",
            "unreadable_bytes": "\(unreadable)", "sequence_numbers_skipped": "\(skipped)",
        ])
    }

    /// A sequence number never goes backwards, even if the whole log was lost: the cursors remember how far
    /// readers got, and an empty log starts after the highest of them.
    private func applySequenceFloor() throws(StoreError) {
        var highest: UInt64 = 0
        for name in try cursorNames() {
            do {
                highest = max(highest, try cursor(name))
            } catch {
                logger.warning("store: ignoring an unreadable cursor file", metadata: ["cursor": "\(name)", "error": "\(error)"])
            }
        }
        if highest >= nextSequence { nextSequence = highest + 1 }
    }

    /// The highest sequence number stored (0 when empty).
    public var lastSequence: UInt64 { nextSequence - 1 }
    public var count: Int { offsets.count }
    /// The oldest stored sequence number, if any.
    public var firstSequence: UInt64? { sequences.first }

    /// Appends `readings` and returns once they are durable (written and fsynced), with their sequence numbers.
    @discardableResult
    public func append(_ readings: [Reading]) throws(StoreError) -> ClosedRange<UInt64>? {
        guard !readings.isEmpty else { return nil }
        if let poisoned { throw poisoned }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(readings.count * 64)
        var newOffsets: [Int64] = []
        newOffsets.reserveCapacity(readings.count)
        var seq = nextSequence
        var body: [UInt8] = []
        for r in readings {
            body.removeAll(keepingCapacity: true)
            guard r.raw.count <= ReadingCodec.maximumRawWords else {
                throw StoreError(call: "append", path: path, errno: EINVAL,
                                 detail: "reading \(r.device)/\(r.channel) has \(r.raw.count) raw words (at most \(ReadingCodec.maximumRawWords))")
            }
            ReadingCodec.encode(seq: seq, r, into: &body)
            guard body.count <= Self.maximumBodySize else {
                throw StoreError(call: "append", path: path, errno: EINVAL, detail: "reading \(r.device)/\(r.channel) encodes to \(body.count) bytes")
            }
            newOffsets.append(endOffset + Int64(buffer.count))
            buffer.appendLE(UInt32(body.count))
            buffer.appendLE(CRC32C.checksum(body))
            buffer.append(contentsOf: body)
            seq += 1
        }
        do {
            try pwriteAll(buffer, at: endOffset)
            try fsyncFile()
        } catch {
            // Nothing after endOffset counts: cut what may have been written so the next append starts clean.
            // If even that fails, stop appending: a later, shorter batch would leave part of this one behind,
            // with valid checksums, and recovery would take it for stored data.
            if ftruncate(fd, off_t(endOffset)) != 0 || fsync(fd) != 0 {
                poisoned = StoreError(call: "ftruncate", path: path, errno: errno,
                                      detail: "could not undo a failed append; appends refused until the store is reopened")
                logger.critical("\(poisoned!)")
            }
            throw error
        }
        endOffset += Int64(buffer.count)
        offsets.append(contentsOf: newOffsets)
        sequences.append(contentsOf: nextSequence..<seq)
        let range = nextSequence...(seq - 1)
        nextSequence = seq
        for c in subscribers.values { c.yield(range.upperBound) }
        return range
    }

    /// Up to `limit` readings with sequence numbers greater than `seq`, oldest first.
    public func read(after seq: UInt64, limit: Int) throws(StoreError) -> [(seq: UInt64, reading: Reading)] {
        guard limit > 0 else { return [] }
        // First record with a sequence number above `seq`.
        var lo = 0, hi = sequences.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sequences[mid] <= seq { lo = mid + 1 } else { hi = mid }
        }
        let first = lo
        guard first < sequences.count else { return [] }
        let last = min(offsets.count, first + limit)
        let from = offsets[first]
        let to = last < offsets.count ? offsets[last] : endOffset
        let bytes = try preadAll(count: Int(to - from), at: from)
        var out: [(UInt64, Reading)] = []
        out.reserveCapacity(last - first)
        var pos = 0
        while pos + 8 <= bytes.count {
            var hr = ByteReader(bytes[pos..<pos + 8])
            let length = Int(hr.u32()!)
            _ = hr.u32()
            guard let decoded = ReadingCodec.decode(bytes[(pos + 8)..<(pos + 8 + length)]) else {
                throw StoreError(call: "read", path: path, errno: 0, detail: "undecodable record at offset \(from + Int64(pos))")
            }
            out.append(decoded)
            pos += 8 + length
        }
        return out
    }

    /// A stream of the last sequence number after each append (newest only: a slow reader sees the latest).
    public func updates() -> AsyncStream<UInt64> {
        let (stream, continuation) = AsyncStream.makeStream(of: UInt64.self, bufferingPolicy: .bufferingNewest(1))
        let id = nextSubscriber
        nextSubscriber += 1
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.removeSubscriber(id) }
        }
        if lastSequence > 0 { continuation.yield(lastSequence) }
        return stream
    }

    private func removeSubscriber(_ id: Int) { subscribers[id] = nil }

    // MARK: Cursors

    /// The last sequence number the named reader has finished with (0 = nothing yet).
    public func cursor(_ name: String) throws(StoreError) -> UInt64 {
        let p = cursorPath(name)
        let f = open(p, O_RDONLY | O_CLOEXEC)
        if f < 0 {
            if errno == ENOENT { return 0 }
            throw StoreError(call: "open", path: p, errno: errno)
        }
        defer { Glibc.close(f) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = Glibc.read(f, &buf, 64)
        guard n > 0, let text = String(validating: buf[0..<n], as: UTF8.self),
              let v = UInt64(text.trimmingCharacters(in: " \n"))
        else { throw StoreError(call: "read", path: p, errno: 0, detail: "cursor file is not a number") }
        return v
    }

    /// Durably moves the named cursor (write to a temp file, fsync, rename over, fsync the directory).
    public func setCursor(_ name: String, to seq: UInt64) throws(StoreError) {
        let p = cursorPath(name)
        let tmp = p + ".tmp"
        let f = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard f >= 0 else { throw StoreError(call: "open", path: tmp, errno: errno) }
        let text = Array("\(seq)\n".utf8)
        let ok = text.withUnsafeBytes { write(f, $0.baseAddress, $0.count) } == text.count
        let e = errno
        guard ok else { Glibc.close(f); throw StoreError(call: "write", path: tmp, errno: e) }
        guard fsync(f) == 0 else { let e = errno; Glibc.close(f); throw StoreError(call: "fsync", path: tmp, errno: e) }
        Glibc.close(f)
        guard rename(tmp, p) == 0 else { throw StoreError(call: "rename", path: p, errno: errno) }
        try Self.fsyncDirectory(directory + "/cursors")
    }

    private func cursorNames() throws(StoreError) -> [String] {
        guard let d = opendir(directory + "/cursors") else { throw StoreError(call: "opendir", path: directory + "/cursors", errno: errno) }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") || name.hasSuffix(".tmp") { continue }
            // Anything else a person left there (backups, editor files) is not a cursor.
            guard isPlainName(name) else { continue }
            names.append(name)
        }
        return names
    }

    private func cursorPath(_ name: String) -> String {
        precondition(isPlainName(name), "cursor names are [A-Za-z0-9_-]")
        return directory + "/cursors/" + name
    }

    /// Closes the file and ends the store's thread. The store must not be used afterwards.
    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        for c in subscribers.values { c.finish() }
        subscribers.removeAll()
        executor.shutdown()
    }

    // MARK: File I/O (the one choke point for this file's calls)

    private func pwriteAll(_ bytes: [UInt8], at offset: Int64) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(offset + Int64(done))) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(call: "pwrite", path: path, errno: errno)
            }
            if n == 0 { throw StoreError(call: "pwrite", path: path, errno: EIO, detail: "wrote nothing") }
            done += n
        }
    }

    private func preadAll(count: Int, at offset: Int64) throws(StoreError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + Int64(done))) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(call: "pread", path: path, errno: errno)
            }
            if n == 0 { throw StoreError(call: "pread", path: path, errno: 0, detail: "unexpected end of file at \(off_t(offset + Int64(done)))") }
            done += n
        }
        return buf
    }

    private func fsyncFile() throws(StoreError) {
        guard fsync(fd) == 0 else { throw StoreError(call: "fsync", path: path, errno: errno) }
    }

    static func fsyncDirectory(_ dir: String) throws(StoreError) {
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { throw StoreError(call: "open", path: dir, errno: errno) }
        defer { Glibc.close(d) }
        guard fsync(d) == 0 else { throw StoreError(call: "fsync", path: dir, errno: errno) }
    }

    static func makeDirectories(_ dir: String) throws(StoreError) {
        var current = dir.hasPrefix("/") ? "" : "."
        for part in dir.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o750) != 0 && errno != EEXIST {
                throw StoreError(call: "mkdir", path: current, errno: errno)
            }
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE16(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
