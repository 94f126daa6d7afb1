import KilnTallyCore
import Logging

/// What `kilntally store verify` found in one store (the reading ring, or the ledger).
public struct StoreVerification: Sendable {
    public var directory: String
    /// `readings` for the ring, `records` for the ledger.
    public var unit = "readings"
    public var segments = 0
    public var readings = 0
    public var bytes: Int64 = 0
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    public var firstTime: UTCInstant?
    public var lastTime: UTCInstant?
    /// Bytes that the next open would cut off as a torn tail (normal after a power cut).
    public var tornTailBytes: Int64 = 0
    /// Damage found now (each names the file and what is wrong).
    public var damage: [String] = []
    /// Segments set aside by earlier opens.
    public var quarantined: [String] = []
    /// Gaps between consecutive stored sequence numbers (dropped by the byte bound, or lost to a quarantine).
    public var gaps: [ClosedRange<UInt64>] = []

    public var bytesPerReading: Double { readings == 0 ? 0 : Double(bytes) / Double(readings) }
    public var isClean: Bool { damage.isEmpty }
}

/// Read-only inspection of a reading ring while the daemon is stopped: nothing is cut, renamed or created.
public enum StoreInspector {
    public static func verify(directory: String, fs: any FileIO = PosixFileIO()) throws(StoreError) -> StoreVerification {
        try verifyLog(ReadingFrames.self, directory: directory, fs: fs, unit: "readings") { body, dictionary in
            let decoded = try BatchCodec.decode(body[...], dictionary: &dictionary)
            return (decoded.firstSequence, decoded.readings.count, decoded.readings.map(\.time))
        }
    }

    public static func verifyLedger(directory: String, fs: any FileIO = PosixFileIO()) throws(StoreError) -> StoreVerification {
        try verifyLog(LedgerFrames.self, directory: directory, fs: fs, unit: "records") { body, _ in
            let r = try LedgerFrames.decode(body[...])
            return (r.sequence, 1, [r.time])
        }
    }

    /// Reads every frame of every segment with the full decoder (a checksum can be right on a frame this binary
    /// cannot read) and reports counts, ranges, gaps and damage. Read-only.
    static func verifyLog<F: FrameFormat>(
        _ format: F.Type, directory: String, fs: any FileIO, unit: String,
        decode: (_ body: [UInt8], _ state: inout F.SegmentState) throws -> (first: UInt64, count: Int, times: [UTCInstant])
    ) throws(StoreError) -> StoreVerification {
        var v = StoreVerification(directory: directory, unit: unit)
        let log = try SegmentedLog<F>(fs: fs, directory: directory + "/segments", bootID: [], readOnly: true,
                                      logger: Logger(label: "store-verify"))
        v.tornTailBytes = log.report.truncatedBytes
        v.damage = log.report.damage
        v.quarantined = log.report.alreadyQuarantined
        var previous: UInt64?
        for (s, segment) in log.segments.enumerated() {
            v.segments += 1
            v.bytes += segment.size
            var state = F.emptyState()
            for (f, frame) in segment.frames.enumerated() {
                do {
                    let body = try log.readFrame(segment: s, frame: f)
                    let decoded = try decode(body, &state)
                    guard decoded.count == frame.summary.count else {
                        v.damage.append("\(segment.path): frame at \(frame.offset) holds \(decoded.count) \(unit), its summary says \(frame.summary.count)")
                        continue
                    }
                    v.readings += decoded.count
                    if let p = previous, decoded.first > p + 1 { v.gaps.append((p + 1)...(decoded.first - 1)) }
                    previous = frame.summary.lastSequence
                    v.firstSequence = v.firstSequence ?? decoded.first
                    v.lastSequence = frame.summary.lastSequence
                    for t in decoded.times {
                        if v.firstTime == nil || t < v.firstTime! { v.firstTime = t }
                        if v.lastTime == nil || t > v.lastTime! { v.lastTime = t }
                    }
                } catch {
                    v.damage.append("\(segment.path): frame at \(frame.offset): \(error)")
                }
            }
        }
        return v
    }

    /// Calls `body` for each ledger record with a sequence number ≥ `from`, oldest first, at most `limit`.
    public static func dumpLedger(directory: String, fs: any FileIO = PosixFileIO(), from: UInt64 = 0, limit: Int = .max,
                                  _ body: (LedgerRecord) -> Void) throws(StoreError) {
        let log = try SegmentedLog<LedgerFrames>(fs: fs, directory: directory + "/segments", bootID: [], readOnly: true,
                                                 logger: Logger(label: "ledger-dump"))
        var emitted = 0
        for (s, segment) in log.segments.enumerated() {
            for (f, frame) in segment.frames.enumerated() where frame.summary.firstSequence >= from {
                guard let bytes = try? log.readFrame(segment: s, frame: f), let r = try? LedgerFrames.decode(bytes[...]) else { continue }
                body(r)
                emitted += 1
                if emitted >= limit { return }
            }
        }
    }

    /// Calls `body` for each stored reading with a sequence number ≥ `from`, oldest first, at most `limit`.
    /// Damaged frames are skipped (verify reports them).
    public static func dump(directory: String, fs: any FileIO = PosixFileIO(), from: UInt64 = 0, limit: Int = .max,
                            _ body: (UInt64, Reading) -> Void) throws(StoreError) {
        let log = try SegmentedLog<ReadingFrames>(fs: fs, directory: directory + "/segments", bootID: [],
                                                  readOnly: true, logger: Logger(label: "store-dump"))
        var emitted = 0
        for (s, segment) in log.segments.enumerated() {
            guard let last = segment.lastSequence, last >= from else { continue }
            var dictionary = segment.state
            for (f, frame) in segment.frames.enumerated() where frame.summary.lastSequence >= from {
                guard let bytes = try? log.readFrame(segment: s, frame: f),
                      let decoded = try? BatchCodec.decode(bytes[...], dictionary: &dictionary) else { continue }
                for (i, r) in decoded.readings.enumerated() where decoded.firstSequence + UInt64(i) >= from {
                    body(decoded.firstSequence + UInt64(i), r)
                    emitted += 1
                    if emitted >= limit { return }
                }
            }
        }
    }
}
