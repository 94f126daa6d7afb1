import Foundation
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Tally
#if canImport(Glibc)
import Glibc
#endif

/// The tally's checkpoint file: its whole position (`TallyEngine.State`) as JSON, replaced atomically — written to a
/// temporary file, fsynced, renamed over the old one, and the directory fsynced — so a crash leaves either the old
/// checkpoint or the new one, never a torn one.
enum TallyCheckpoint {
    static func load(_ path: String) throws -> TallyEngine.State? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw CheckpointError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return try JSONCoding.decoder.decode(TallyEngine.State.self, from: Data(bytes))
    }

    static func save(_ state: TallyEngine.State, to path: String) throws {
        let bytes = Array(try JSONCoding.encoder.encode(state))
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw CheckpointError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                throw CheckpointError("cannot write \(temporary): \(String(cString: strerror(e)))")
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let e = errno
            close(fd)
            throw CheckpointError("cannot fsync \(temporary): \(String(cString: strerror(e)))")
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw CheckpointError("cannot rename \(temporary): \(String(cString: strerror(errno)))") }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    struct CheckpointError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}

/// The clock ticks the tally is driven by are stored as readings of this reserved device (so a replay of the store
/// closes shifts at the same instants); the value says whether the clock was synchronized.
public enum TallyClock {
    public static let device: DeviceID = "kilntally"
    public static let channel: ChannelID = "clock"

    public static func input(_ seq: UInt64, _ r: Reading) -> TallyInput {
        r.device == device && r.channel == channel ? .tick(sequence: seq, time: r.time) : .reading(sequence: seq, r)
    }
}

/// Runs the tally: records a clock tick in the store every `tickInterval`, feeds the store's readings (from the
/// checkpoint's position on) to the engine, appends the records it produces to the ledger (each fsynced), and only
/// then writes the checkpoint. After a crash the engine replays from the checkpoint and produces the same records
/// again; those already in the ledger are recognized (same bytes, right after the checkpoint's chain head) and not
/// written twice.
struct TallyService: Service {
    let store: RingStore
    let ledger: Ledger
    let setup: TallyEngine.Setup
    let checkpointPath: String
    let tickInterval: Duration
    let clock: any WallClock
    let logger: Logger

    func run() async throws {
        let updates = await store.updates()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    let synced = clock.isSynchronized()
                    store.submit([Reading(device: TallyClock.device, channel: TallyClock.channel, time: clock.now(),
                                          value: .bool(synced), clockSynchronized: synced)])
                    do { try await Task.sleep(for: tickInterval) } catch { return }
                }
            }
            try await cancelWhenGracefulShutdown { try await consume(updates) }
            group.cancelAll()
        }
        await ledger.close()
    }

    /// Loads the checkpoint, then consumes the store as it grows until cancelled.
    private func consume(_ updates: AsyncStream<UInt64>) async throws {
        var engine = TallyEngine(setup: setup, state: try TallyCheckpoint.load(checkpointPath) ?? .init())
        var alreadyWritten = try await recordsAfterCheckpoint(engine.state.chainHead)
        if !alreadyWritten.isEmpty {
            logger.notice("tally: \(alreadyWritten.count) record(s) in the ledger are newer than the checkpoint; replaying to them")
        }
        logger.info("tally starts after reading \(engine.state.lastSequence)", metadata: ["checkpoint": "\(checkpointPath)"])
        try await catchUp(&engine, &alreadyWritten)
        for await _ in updates {
            do {
                try await catchUp(&engine, &alreadyWritten)
            } catch {
                logger.error("tally: \(error); retrying with the next readings")
            }
        }
        logger.info("tally stopped after reading \(engine.state.lastSequence)")
    }

    /// Consumes every durable reading after the engine's position, writing records, then the checkpoint.
    private func catchUp(_ engine: inout TallyEngine, _ alreadyWritten: inout [[UInt8]]) async throws {
        while true {
            let batch = try await store.read(after: engine.state.lastSequence, limit: 2_000)
            if let gap = batch.gap {
                logger.error("tally: readings \(gap.lowerBound)...\(gap.upperBound) are gone from the store (dropped for space before the tally read them)")
            }
            guard !batch.readings.isEmpty else { return }
            for (seq, reading) in batch.readings {
                for output in engine.consume(TallyClock.input(seq, reading)) {
                    switch output {
                    case .record(let kind, let id, let revision, let json):
                        if alreadyWritten.first == json {
                            alreadyWritten.removeFirst()
                            continue
                        }
                        try await ledger.append(type: kind.rawValue, body: json, time: reading.time)
                        logger.info("tally: \(kind.rawValue) \(id) revision \(revision) written")
                    case .event(let e):
                        logger.notice("event \(e.kind.rawValue): \(e.message)")
                    }
                }
            }
            try TallyCheckpoint.save(engine.state, to: checkpointPath)
        }
    }

    /// The ledger's chained records after the one whose hash is the checkpoint's chain head (all of them when the
    /// head is the genesis).
    private func recordsAfterCheckpoint(_ head: String) async throws -> [[UInt8]] {
        var after: [[UInt8]] = []
        var seq: UInt64 = 0
        var seen = head == HashChain.genesis
        while true {
            let records = try await ledger.read(after: seq, limit: 1_000)
            guard let last = records.last else { break }
            seq = last.sequence
            for r in records where r.type == "ticket" || r.type == "report" {
                if seen {
                    after.append(r.body)
                } else if case .string(let h)? = (try? CanonicalJSON.parse(r.body))?.objectValue?[HashChain.hashField], h == head {
                    seen = true
                }
            }
        }
        return after
    }
}

/// One JSON encoding for checkpoints: sorted keys, so the same state always gives the same bytes.
enum JSONCoding {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
    static var decoder: JSONDecoder { JSONDecoder() }
}
